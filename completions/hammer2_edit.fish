complete -c hammer2_edit -l pfs -d 'PFS to work in (default: DATA, or the only PFS besides LOCAL)' -r
complete -c hammer2_edit -l copy -d 'Use volume-header copy N instead of the best one (read commands only)' -r
complete -c hammer2_edit -s c -d 'Run the commands in a string, separated by \';\' or newlines (-R is the same)' -r
complete -c hammer2_edit -s f -d 'Run the commands in FILE (one per line or \';\'; \'#\' starts a comment; \'-\' reads stdin)' -r
complete -c hammer2_edit -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_edit -s n -l dry-run -d 'Run every command but write nothing; print what would change'
complete -c hammer2_edit -s q -l quiet -d 'Print nothing after a commit or dry run (read commands still print)'
complete -c hammer2_edit -l json -d 'After a commit or dry run, print its report as JSON'
complete -c hammer2_edit -s v -l verbose -d 'Echo each command on stderr before it runs (scripts always do)'
complete -c hammer2_edit -l keep-going -d 'A failing write command is undone and counted, the others still commit (exit status 1)'
complete -c hammer2_edit -l debug-lag-freemap -d 'Debugging and tests: after the commit, put the freemap of the previous header copy back (freemap_tid one transaction behind), the crash window hammer2_recover (and any write) repairs'
complete -c hammer2_edit -s h -l help -d 'Print help'
complete -c hammer2_edit -s V -l version -d 'Print version'
