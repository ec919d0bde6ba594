# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_opensyncd_global_optspecs
    string join \n foreground log-level= log-format= color= h/help V/version
end

function __fish_opensyncd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_opensyncd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_opensyncd_using_subcommand
    set -l cmd (__fish_opensyncd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c opensyncd -n "__fish_opensyncd_needs_command" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_needs_command" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_needs_command" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_needs_command" -l foreground -d 'Run the daemon in the foreground (the same as `opensyncd run`)'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -s V -l version -d 'Print version'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "run" -d 'Run the daemon in the foreground (what the service runs)'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "login" -d 'Save the server URL and API key (verified against the server first)'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "logout" -d 'Log out: stop pushing now (in the running daemon too) and forget the API key'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "pause" -d 'Stop pushing (in the running daemon too) until `opensyncd resume`, or for a while'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "resume" -d 'Lift a pause: pushing starts again at once'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "status" -d 'Show what is synced, what is pending, and any problem; the exit status says the state'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "verify" -d 'Check credentials, the connection, the daemon, the service and each source directory'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "sync" -d 'Sync now (through the running daemon if there is one), or show what would be sent'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "synctest" -d 'Create a test session with one message on the server and report their ids'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "export" -d 'Print, one JSON object per session, exactly what would be sent'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "audit" -d 'Compare what the server holds with `export`, field by field; `--repair` re-sends what differs'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "config" -d 'Show the resolved configuration and where each value came from (the API key masked)'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "set" -d 'Set (or with --unset, remove) a configuration key in config.toml'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "setup" -d 'Add (or remove) the tools\' hooks that nudge the daemon right after each turn'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "hook" -d 'Called by the tools\' hooks: nudges the daemon. Always fast, never fails the tool'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "logs" -d 'Show the daemon\'s log (the journal under systemd, the log file otherwise)'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "service" -d 'Install, remove or inspect the background service (systemd user unit / LaunchAgent)'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "prices" -d 'Show the model price table in use, or download LiteLLM\'s current one'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c opensyncd -n "__fish_opensyncd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand run" -l debounce-ms -d 'Debounce for file events, in milliseconds (also OPENSYNCD_DEBOUNCE_MS)' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand run" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand run" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand run" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand login" -l url -d 'The OpenSync URL (your Convex deployment\'s .convex.site or .convex.cloud URL; also OPENSYNCD_URL)' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand login" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand login" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand login" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand login" -l key-stdin -d 'Read the API key from standard input instead of prompting'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logout" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logout" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logout" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logout" -l purge -d 'Also stop the daemon and delete the ledger (what has been synced) and the config file'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logout" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand pause" -l for -d 'How long (90s, 30m, 2h, 1d, 1h30m); without it, until `opensyncd resume`' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand pause" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand pause" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand pause" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand resume" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand resume" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand resume" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -l interval -d 'Seconds between two refreshes of --watch' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -l json -d 'Machine-readable output (with --watch: one JSON object per line, per refresh)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -l rejected -d 'List every record the server refused, with its reason'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -l watch -d 'Redraw every few seconds until interrupted (Ctrl-C)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand verify" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand verify" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand verify" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand verify" -l json -d 'Machine-readable output (one object per check)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l limit -d 'Only the N most recently changed files / sessions' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l source -d 'Only this source; repeatable' -r -f -a "claude-code\t''
codex-cli\t''
opencode\t''
pi\t''
factory-droid\t''
cursor-sync\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l timeout -d 'Give up after this long (90s, 5m, 1h…); what was acknowledged by then is kept and the exit status is non-zero. Through the daemon: stop waiting (it carries on)' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l all -d 'Everything not yet synced (the default)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l new -d 'Only sessions that were never synced'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l force -d 'Re-send the selected sessions even if they were synced (safe: ids are stable)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l retry-rejected -d 'Send again the records the server refused before (see `status --rejected`)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l dry-run -d 'Show the files and sessions that would be sent, without sending (asks the running daemon when there is one)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -l json -d 'Machine-readable output (the summary, or the dry run\'s findings)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand synctest" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand synctest" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand synctest" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand synctest" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand export" -l source -d 'Only this source; repeatable' -r -f -a "claude-code\t''
codex-cli\t''
opencode\t''
pi\t''
factory-droid\t''
cursor-sync\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand export" -l session -d 'Only this session id (an id that matches nothing is an error)' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand export" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand export" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand export" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -l session -d 'Only this session (its id as `export` prints it), found on the server by that id' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -l limit -d 'The N most recently updated sessions on the server (default 20); local sessions the server lacks are reported too' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -l repair -d 'Re-send what differs through the per-record routes (after the server\'s dedup windows), then fetch again and report what is now equal'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -l json -d 'Machine-readable output'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand audit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand config" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand config" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand config" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand config" -l json -d 'Machine-readable output'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand set" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand set" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand set" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand set" -l unset -d 'Remove the key from config.toml instead of setting it'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l claude -d 'Claude Code: Stop and SessionEnd hooks in settings.json'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l codex -d 'Codex CLI: `notify` in config.toml (left alone when another program is set)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l cursor -d 'Cursor: hooks in ~/.cursor/hooks.json'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l droid -d 'Factory Droid: Stop and SessionEnd hooks in ~/.factory/settings.json'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l remove -d 'Remove what setup added'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -l dry-run -d 'Show the changes without writing'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand setup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand hook" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand hook" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand hook" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand hook" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logs" -s n -l lines -d 'How many of the last lines to show first' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logs" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logs" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logs" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logs" -s f -l follow -d 'Keep printing new lines as they are written'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand logs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "install" -d 'Write the unit / agent for this binary, enable and start it'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "uninstall" -d 'Stop, disable and remove everything `install` wrote'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "status" -d 'Is the service installed, enabled, running?'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from install" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from install" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from install" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from install" -l dry-run -d 'Print the files and commands without doing anything'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l dry-run -d 'Print the files and commands without doing anything'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from status" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from status" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from status" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from status" -l json -d 'Machine-readable output'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Write the unit / agent for this binary, enable and start it'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Stop, disable and remove everything `install` wrote'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "status" -d 'Is the service installed, enabled, running?'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and not __fish_seen_subcommand_from show update help" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and not __fish_seen_subcommand_from show update help" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and not __fish_seen_subcommand_from show update help" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and not __fish_seen_subcommand_from show update help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and not __fish_seen_subcommand_from show update help" -f -a "show" -d 'Which table is in use (bundled or installed, LiteLLM version and date); with a model, what it resolves to and its rates'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and not __fish_seen_subcommand_from show update help" -f -a "update" -d 'Download LiteLLM\'s current price table, check it, and install it in the state dir (where it wins over the bundled table). A bad download changes nothing'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and not __fish_seen_subcommand_from show update help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from show" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from show" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from show" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from show" -l json -d 'Machine-readable output'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from update" -l url -d 'Where to download it from (default: the `prices_url` key, else LiteLLM\'s file)' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from update" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from update" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from update" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from help" -f -a "show" -d 'Which table is in use (bundled or installed, LiteLLM version and date); with a model, what it resolves to and its rates'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from help" -f -a "update" -d 'Download LiteLLM\'s current price table, check it, and install it in the state dir (where it wins over the bundled table). A bad download changes nothing'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand prices; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand completions" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand completions" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand completions" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand man" -l log-level -d 'Log level: error, warn, info, debug, trace, off (opensyncd\'s own logs; other crates stay at warn), or a full tracing filter such as `info,sled=debug`. Also OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more' -r
complete -c opensyncd -n "__fish_opensyncd_using_subcommand man" -l log-format -d 'Log format (also OPENSYNCD_LOG_FORMAT)' -r -f -a "text\t''
json\t''"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand man" -l color -d 'Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never' -r -f -a "auto\t'When writing to a terminal and `NO_COLOR` is not set'
always\t'Always'
never\t'Never'"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "run" -d 'Run the daemon in the foreground (what the service runs)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "login" -d 'Save the server URL and API key (verified against the server first)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "logout" -d 'Log out: stop pushing now (in the running daemon too) and forget the API key'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "pause" -d 'Stop pushing (in the running daemon too) until `opensyncd resume`, or for a while'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "resume" -d 'Lift a pause: pushing starts again at once'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "status" -d 'Show what is synced, what is pending, and any problem; the exit status says the state'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "verify" -d 'Check credentials, the connection, the daemon, the service and each source directory'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "sync" -d 'Sync now (through the running daemon if there is one), or show what would be sent'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "synctest" -d 'Create a test session with one message on the server and report their ids'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "export" -d 'Print, one JSON object per session, exactly what would be sent'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "audit" -d 'Compare what the server holds with `export`, field by field; `--repair` re-sends what differs'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "config" -d 'Show the resolved configuration and where each value came from (the API key masked)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "set" -d 'Set (or with --unset, remove) a configuration key in config.toml'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "setup" -d 'Add (or remove) the tools\' hooks that nudge the daemon right after each turn'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "hook" -d 'Called by the tools\' hooks: nudges the daemon. Always fast, never fails the tool'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "logs" -d 'Show the daemon\'s log (the journal under systemd, the log file otherwise)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "service" -d 'Install, remove or inspect the background service (systemd user unit / LaunchAgent)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "prices" -d 'Show the model price table in use, or download LiteLLM\'s current one'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "completions" -d 'Print shell completions'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and not __fish_seen_subcommand_from run login logout pause resume status verify sync synctest export audit config set setup hook logs service prices completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Write the unit / agent for this binary, enable and start it'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "uninstall" -d 'Stop, disable and remove everything `install` wrote'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "status" -d 'Is the service installed, enabled, running?'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and __fish_seen_subcommand_from prices" -f -a "show" -d 'Which table is in use (bundled or installed, LiteLLM version and date); with a model, what it resolves to and its rates'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand help; and __fish_seen_subcommand_from prices" -f -a "update" -d 'Download LiteLLM\'s current price table, check it, and install it in the state dir (where it wins over the bundled table). A bad download changes nothing'
complete -c opensyncd -n "__fish_opensyncd_using_subcommand set" -f -a "url transport concurrency debounce_ms rescan_interval_secs sync_thinking sync_tool_calls sync_subagents redact redact_patterns max_part_bytes max_body_bytes max_line_bytes request_timeout_secs connect_timeout_secs log_level log_format sources claude_dirs codex_dirs opencode_dirs opencode_db pi_dirs droid_dirs cursor_dirs pricing_file exclude prices_url"
complete -c opensyncd -n "__fish_opensyncd_using_subcommand completions" -f -a "bash elvish fish powershell zsh"
