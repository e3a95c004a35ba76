complete -c fsck_hammer2 -l use-copy -d 'Make header copy N\'s tree current again (a rollback: the transactions after it are lost); with -y it is done, otherwise only described. Without it, -y rolls back by itself when the tree in use is damaged and an older copy\'s is less so' -r
complete -c fsck_hammer2 -l memory -d 'Memory the per-inode and per-entry cross-check records may take before sorted runs spill to --tmpdir (suffixes K, M, G; default 48M). The mapping of the device adds at most 64 MiB' -r
complete -c fsck_hammer2 -l tmpdir -d 'Directory for the spilled runs (default $TMPDIR, else /tmp); they are unlinked as soon as they are created. Never on the device being checked' -r -F
complete -c fsck_hammer2 -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c fsck_hammer2 -s n -d 'Check only; never write (the default)'
complete -c fsck_hammer2 -s y -d 'Repair everything that can be repaired'
complete -c fsck_hammer2 -s p -d 'Repair only what needs no decision'
complete -c fsck_hammer2 -l sync-headers -d 'With -y or -p, also rewrite valid header copies older than the best one'
complete -c fsck_hammer2 -l all-copies -d 'Verify the trees under every valid header copy, not only the best'
complete -c fsck_hammer2 -s q -l quiet -d 'Print only problems'
complete -c fsck_hammer2 -s v -l verbose -d 'Print every blockref as it is checked, and informational findings'
complete -c fsck_hammer2 -l json -d 'Print the report as JSON'
complete -c fsck_hammer2 -s h -l help -d 'Print help'
complete -c fsck_hammer2 -s V -l version -d 'Print version'
