complete -c hammer2_recover -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_recover -s n -l dry-run -d 'Scan and report what would be marked; write nothing'
complete -c hammer2_recover -s v -l verbose -d 'Also report per PFS, and how many blockrefs were examined and read'
complete -c hammer2_recover -l json -d 'Print the report as JSON'
complete -c hammer2_recover -l full -d 'Mark every block the topology reaches, not only those newer than the freemap (repairs allocations the freemap lost before its last flush; reads the whole tree)'
complete -c hammer2_recover -s h -l help -d 'Print help'
complete -c hammer2_recover -s V -l version -d 'Print version'
