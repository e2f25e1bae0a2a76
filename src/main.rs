//! `fastcgi-healthcheck`: reads the configuration, runs the server on one thread, maps the
//! outcome to an exit code (0 stopped by a signal, 1 cannot serve, 2 bad configuration).

use std::ffi::OsString;
use std::process::ExitCode;
use std::rc::Rc;

use fastcgi_healthcheck::check;
use fastcgi_healthcheck::config::{self, Command, Config, Pools};
use fastcgi_healthcheck::fpm_healthcheck;
use fastcgi_healthcheck::os::log as logger;
use fastcgi_healthcheck::os::systemd::{self, Activation};
use fastcgi_healthcheck::server;
use smol::LocalExecutor;
use std::io::Write;

const EXIT_CANNOT_SERVE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next();
    let args: Vec<OsString> = argv.collect();
    // php-fpm-healthcheck's interface: by the program's name, or as the first argument.
    if fpm_healthcheck::invoked_as(argv0.as_deref()) {
        return ExitCode::from(fpm_healthcheck::main(&args, |name| std::env::var_os(name)));
    }
    if let Some((first, rest)) = args.split_first() {
        if first == fpm_healthcheck::NAME {
            return ExitCode::from(fpm_healthcheck::main(rest, |name| std::env::var_os(name)));
        }
    }
    let config = match config::parse(&args, |name| std::env::var_os(name)) {
        Ok(Command::Serve(config)) => config,
        Ok(Command::Check {
            config,
            verbose,
            live,
            status,
            pool,
            logs,
        }) => {
            // The verdict line is the output; probe logs only when asked for.
            if logs {
                init_logging(&config);
            }
            if status.is_some() && config.status_path.is_none() {
                fatal("fastcgi-healthcheck: check --status needs a status page, but STATUS_PATH=off\n");
                return ExitCode::from(EXIT_USAGE);
            }
            let question = match (live, status.as_deref()) {
                (true, _) => check::Question::Live,
                (false, Some(thresholds)) => check::Question::Status(thresholds),
                (false, None) => check::Question::Ping,
            };
            let code = match (&config.pools, question) {
                (Pools::One, check::Question::Live) => check::run_live(&config),
                (Pools::One, _) => check::run(&config, verbose, status.as_deref()),
                _ => check::run_pools(&config, pool.as_deref(), question, verbose),
            };
            logger::flush();
            return ExitCode::from(code);
        }
        Ok(Command::Help) => {
            say(&config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            say(concat!(
                "fastcgi-healthcheck ",
                env!("CARGO_PKG_VERSION"),
                "\n"
            ));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            fatal(&format!("fastcgi-healthcheck: {error}\n"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Socket activation first, before the process opens any file that could take descriptor 3.
    let inherited = match systemd::activation(|name| std::env::var_os(name), std::process::id()) {
        Ok(Activation::None) => None,
        Ok(Activation::Sockets(_)) => match systemd::take_listener() {
            Ok(listener) => Some(listener),
            Err(error) => {
                fatal(&format!("fastcgi-healthcheck: {error}\n"));
                return ExitCode::from(EXIT_USAGE);
            }
        },
        Err(error) => {
            fatal(&format!("fastcgi-healthcheck: {error}\n"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(&config);
    let ex = Rc::new(LocalExecutor::new());
    let served = smol::block_on(ex.run(server::run(Rc::clone(&ex), config, inherited)));
    logger::flush();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            fatal(&format!("fastcgi-healthcheck: {error}\n"));
            ExitCode::from(EXIT_CANNOT_SERVE)
        }
    }
}

fn init_logging(config: &Config) {
    logger::init(&config.log);
}

/// Writes `text` to stdout; a closed or full stream loses it rather than panicking.
fn say(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes a fatal error to stderr (`<3>` before each line when stderr is the journal).
fn fatal(text: &str) {
    logger::to_stderr(log::Level::Error, text);
}
