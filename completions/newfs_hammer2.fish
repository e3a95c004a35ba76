complete -c newfs_hammer2 -s b -d 'Boot area size (default 64M, less on small file systems; 8M-256M, multiple of 8M)' -r
complete -c newfs_hammer2 -s r -d 'Auxiliary area size (default 256M, less on small file systems; 8M-1G, multiple of 8M)' -r
complete -c newfs_hammer2 -s V -d 'Volume-header version (1: single volume only; 2: multi-volume, the default)' -r
complete -c newfs_hammer2 -s L -d 'Create a PFS with this label besides LOCAL (repeatable, up to 3; "none" for LOCAL only; default DATA)' -r
complete -c newfs_hammer2 -s s -l size -d 'Size of each volume, as SIZE or SIZE:SIZE:... (default: the whole device); creates missing image files' -r
complete -c newfs_hammer2 -s C -l check -d 'Check code recorded in the PFS roots for their contents' -r -f -a "none\t''
disabled\t''
iscsi32\t''
crc32\t''
xxhash64\t''
sha192\t''"
complete -c newfs_hammer2 -l comp -d 'Compression recorded in the PFS roots for their contents' -r -f -a "none\t''
autozero\t''
lz4\t''
zlib\t''"
complete -c newfs_hammer2 -l populate -d 'Copy this host directory\'s contents (files, symlinks, hard links, devices, modes, owners, times, holes) into the first PFS besides LOCAL, in one commit' -r -F
complete -c newfs_hammer2 -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c newfs_hammer2 -l version -d 'Print version'
complete -c newfs_hammer2 -s n -l dry-run -d 'Print the layout and write nothing'
complete -c newfs_hammer2 -s f -l force -d 'Format even if the device already holds a file system'
complete -c newfs_hammer2 -l zero -d 'Also write zeros over the reserved segment and boot/aux areas, as DragonFly does'
complete -c newfs_hammer2 -l json -d 'Print the summary as JSON'
complete -c newfs_hammer2 -s q -l quiet -d 'Print nothing on success'
complete -c newfs_hammer2 -s h -l help -d 'Print help'
