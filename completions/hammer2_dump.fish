# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_hammer2_dump_global_optspecs
    string join \n wait= h/help V/version
end

function __fish_hammer2_dump_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_hammer2_dump_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_hammer2_dump_using_subcommand
    set -l cmd (__fish_hammer2_dump_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -s h -l help -d 'Print help'
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -s V -l version -d 'Print version'
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -f -a "volhdr" -d 'Show every volume-header copy: fields, CRC status, and the copy in use'
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -f -a "show" -d 'Dump the chain tree: one line per blockref, check codes of node blocks verified'
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -f -a "freemap" -d 'Dump the freemap tree and the free space each 1 GiB zone\'s leaf records'
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -f -a "inode" -d 'Print every field of one inode, found by path or inode number'
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -f -a "pfs" -d 'List the PFSs: label, type, ids, inode allocator and inode count'
complete -c hammer2_dump -n "__fish_hammer2_dump_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand volhdr" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand volhdr" -l json -d 'Print JSON instead of tables'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand volhdr" -l wide -d 'Put the copies side by side in one table (by default each copy is listed after the other, to fit the terminal or 80 columns)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand volhdr" -s h -l help -d 'Print help'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l copy -d 'Use header copy N instead of the best one' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l pfs -d 'Start at the root inode of this PFS' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l offset -d 'Start at the blockref with this data_off (searched in both trees; without radix bits, any radix)' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l depth -d 'Show at most N levels below the starting blockrefs (0: only those)' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l all-copies -d 'Dump from every valid header copy in turn'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l hide-data -d 'Omit DATA blockrefs (and do not read them)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l verify-data -d 'Also read every DATA block and verify its check code (by default only node blocks are read and verified)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l freemap -d 'Also dump the freemap tree'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l json -d 'One JSON object per blockref and line, streamed'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -l wide -d 'One line per blockref however long (by default lines are continued to fit the terminal or 80 columns)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand show" -s h -l help -d 'Print help'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand freemap" -l copy -d 'Use header copy N instead of the best one' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand freemap" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand freemap" -l json -d 'Print JSON instead of text and tables'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand freemap" -l wide -d 'One table with every column and one line per blockref, however wide (by default the output fits the terminal or 80 columns)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand freemap" -s h -l help -d 'Print help'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand inode" -l inum -d 'Inode number instead of a path' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand inode" -l pfs -d 'PFS to look in (default: DATA, or the only PFS other than LOCAL)' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand inode" -l copy -d 'Use header copy N instead of the best one' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand inode" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand inode" -l json -d 'Print JSON instead of text'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand inode" -l wide -d 'One line per field and blockref, however long (by default long lines are continued to fit the terminal or 80 columns)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand inode" -s h -l help -d 'Print help'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand pfs" -l copy -d 'Use header copy N instead of the best one' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand pfs" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand pfs" -l json -d 'Print JSON instead of a table'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand pfs" -l wide -d 'One table with every column, however wide (by default the table fits the terminal or 80 columns)'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand pfs" -s h -l help -d 'Print help'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand help; and not __fish_seen_subcommand_from volhdr show freemap inode pfs help" -f -a "volhdr" -d 'Show every volume-header copy: fields, CRC status, and the copy in use'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand help; and not __fish_seen_subcommand_from volhdr show freemap inode pfs help" -f -a "show" -d 'Dump the chain tree: one line per blockref, check codes of node blocks verified'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand help; and not __fish_seen_subcommand_from volhdr show freemap inode pfs help" -f -a "freemap" -d 'Dump the freemap tree and the free space each 1 GiB zone\'s leaf records'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand help; and not __fish_seen_subcommand_from volhdr show freemap inode pfs help" -f -a "inode" -d 'Print every field of one inode, found by path or inode number'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand help; and not __fish_seen_subcommand_from volhdr show freemap inode pfs help" -f -a "pfs" -d 'List the PFSs: label, type, ids, inode allocator and inode count'
complete -c hammer2_dump -n "__fish_hammer2_dump_using_subcommand help; and not __fish_seen_subcommand_from volhdr show freemap inode pfs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
