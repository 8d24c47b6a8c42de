//! The flags of `sessiond serve` and their `SESSIOND_*` environment variables, made from
//! the settings table (`table.rs`): one flag per setting, named as the file key and Redis's
//! directive. `super::Config::resolve` parses their values over the file's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::def::Kind;
use super::table;

/// What `sessiond serve` was started with: the configuration file, and the settings given
/// by a flag or an environment variable (clap folds both), as text by name. A reload
/// resolves the file again under them, and reports the file's changes to them as
/// overridden.
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub given: BTreeMap<String, String>,
}

impl ServeArgs {
    /// Arguments as if given as flags (tests, and `sessiond` run from code).
    pub fn with(config: Option<PathBuf>, given: &[(&str, &str)]) -> ServeArgs {
        ServeArgs {
            config,
            given: given
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd = cmd.arg(
            Arg::new("config")
                .long("config")
                .env("SESSIOND_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "TOML configuration file; its keys are the long option names \
                     (e.g. `maxmemory-policy`)",
                ),
        );
        for def in table::all().filter(|d| d.load.is_some()) {
            let help = match def.apply {
                Some(_) => format!("{} Live: CONFIG SET {} changes it.", def.help, def.name),
                None => def.help.to_string(),
            };
            let mut arg = Arg::new(def.name)
                .long(def.name)
                .env(def.env())
                .value_name(def.value_name)
                .help(help)
                .hide_env_values(def.secret);
            arg = match def.kind {
                Kind::List => arg.action(ArgAction::Append).value_delimiter(','),
                Kind::Int | Kind::Float => arg.allow_negative_numbers(true),
                _ => arg,
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ServeArgs::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(p) = m.get_one::<PathBuf>("config") {
            self.config = Some(p.clone());
        }
        for def in table::all().filter(|d| d.load.is_some()) {
            if let Some(values) = m.get_many::<String>(def.name) {
                let values: Vec<&str> = values.map(String::as_str).collect();
                self.given.insert(def.name.to_string(), values.join(","));
            }
        }
        Ok(())
    }
}
