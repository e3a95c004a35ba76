# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_hammer2_recover_global_optspecs
    string join \n n/dry-run v/verbose json full wait= h/help V/version
end

function __fish_hammer2_recover_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_hammer2_recover_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_hammer2_recover_using_subcommand
    set -l cmd (__fish_hammer2_recover_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -s n -l dry-run -d 'Scan and report what would be marked; write nothing'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -s v -l verbose -d 'Also report per PFS, and how many blockrefs were examined and read'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -l json -d 'Print the report as JSON'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -l full -d 'Mark every block the topology reaches, not only those newer than the freemap (repairs allocations the freemap lost before its last flush; reads the whole tree)'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -s h -l help -d 'Print help'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -s V -l version -d 'Print version'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -a "freemap" -d 'Replay the freemap recovery of a mount (the default without a subcommand)'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -a "list" -d 'List what the media holds that can be recovered: every version of every file found, live or not'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -a "files" -d 'Recover files (every version found) into a host directory'
complete -c hammer2_recover -n "__fish_hammer2_recover_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand freemap" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand freemap" -s n -l dry-run -d 'Scan and report what would be marked; write nothing'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand freemap" -s v -l verbose -d 'Also report per PFS, and how many blockrefs were examined and read'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand freemap" -l json -d 'Print the report as JSON'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand freemap" -l full -d 'Mark every block the topology reaches, not only those newer than the freemap (repairs allocations the freemap lost before its last flush; reads the whole tree)'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand freemap" -s h -l help -d 'Print help'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -l pfs -d 'Only this PFS (by label)' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -l memory -d 'Memory for the scan\'s tables (e.g. 512M, 2G); past it they spill to --tmpdir' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -l tmpdir -d 'Directory for spilled records (default: the system\'s temporary directory; never the scanned device)' -r -F
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -l deleted -d 'Only what the live tree no longer reaches, or reaches in another version'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -l json -d 'Print JSON'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -l relaxed -d 'Also use what no check code vouches for (blockrefs with check none or disabled, inodes no blockref names); reported as unverified'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand list" -s h -l help -d 'Print help'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -l pfs -d 'Only this PFS (by label)' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -l memory -d 'Memory for the scan\'s tables (e.g. 512M, 2G); past it they spill to --tmpdir' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -l tmpdir -d 'Directory for spilled records (default: the system\'s temporary directory; never the scanned device)' -r -F
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -l wait -d 'When another run holds the device (see LOCKING), wait until it is free, or at most SECONDS, instead of failing at once' -r
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -l latest -d 'Only the newest version of each name'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -l json -d 'Print the summary as JSON'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -l relaxed -d 'Also use what no check code vouches for (blockrefs with check none or disabled, inodes no blockref names); reported as unverified'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand files" -s h -l help -d 'Print help'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand help; and not __fish_seen_subcommand_from freemap list files help" -f -a "freemap" -d 'Replay the freemap recovery of a mount (the default without a subcommand)'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand help; and not __fish_seen_subcommand_from freemap list files help" -f -a "list" -d 'List what the media holds that can be recovered: every version of every file found, live or not'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand help; and not __fish_seen_subcommand_from freemap list files help" -f -a "files" -d 'Recover files (every version found) into a host directory'
complete -c hammer2_recover -n "__fish_hammer2_recover_using_subcommand help; and not __fish_seen_subcommand_from freemap list files help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
