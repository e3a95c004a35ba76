complete -c hammer2_mount -s o -d 'Mount options, comma-separated: ro (the default), rw, commit=SECONDS (read-write: commit at least this often, default 5), dirty=SIZE (read-write: commit when this much was written since the last commit, default 256M), allow_other, allow_root' -r
complete -c hammer2_mount -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_mount -s f -l foreground -d 'Stay in the foreground (otherwise the mount runs as a daemon once it is up)'
complete -c hammer2_mount -s h -l help -d 'Print help'
complete -c hammer2_mount -s V -l version -d 'Print version'
