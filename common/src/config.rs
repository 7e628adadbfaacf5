//! Configuration: flags, environment variables and an optional YAML file, in that order of precedence.
//!
//! Every setting has one flag and one environment variable (clap's `env`). The YAML file adds a third source
//! without a third set of names: each key is a flag name (`database-url`, `database_url`) or an environment
//! variable name (`DATABASE_URL`), and its value is used only when neither the flag nor the variable is given.

use std::{ffi::OsString, path::PathBuf};

use clap::{ArgAction, CommandFactory, Parser};

/// The `--config` flag every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFileArgs {
    /// YAML file of settings (keys are flag or environment variable names); flags and env vars win over it.
    #[arg(long = "config", env = "LIVEMIX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {source}")]
    Yaml { path: PathBuf, source: serde_yaml::Error },
    #[error("config file {path} must be a mapping of setting names to values")]
    NotAMapping { path: PathBuf },
    #[error("config file {path}: unknown setting {key:?} (see --help for the names)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: setting {key:?} must be a string, number or boolean")]
    BadValue { path: PathBuf, key: String },
}

/// Parses `T` from the command line, the environment and the `--config` file; exits with a clear message on
/// error, as clap does.
pub fn parse<T: Parser>() -> T {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match with_config_file::<T>(argv, |name| std::env::var_os(name)) {
        Ok(argv) => T::try_parse_from(argv).unwrap_or_else(|err| without_secrets::<T>(err).exit()),
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    }
}

/// clap quotes a refused value in its error, which lands in terminals, CI logs and pod logs: for a flag that
/// holds a secret (declared with `hide_env_values`), the value is left out and only the reason kept.
fn without_secrets<T: CommandFactory>(err: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(err.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return err;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else { return err };
    let command = T::command();
    let secret = command.get_arguments().any(|candidate| {
        candidate.is_hide_env_values_set()
            && candidate.get_long().is_some_and(|long| arg.split([' ', '=']).next() == Some(&format!("--{long}")))
    });
    if !secret {
        return err;
    }
    let why = std::error::Error::source(&err).map(|source| source.to_string()).unwrap_or_default();
    clap::Error::raw(
        ErrorKind::ValueValidation,
        format!("invalid value for '{arg}' (not shown, it is secret): {why}\n"),
    )
}

/// Returns `argv` with the config file's settings appended as flags where neither a flag nor an environment
/// variable sets them.
pub fn with_config_file<T: CommandFactory>(
    mut argv: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_path(&argv).or_else(|| env("LIVEMIX_CONFIG").map(PathBuf::from)) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|source| ConfigError::Yaml { path: path.clone(), source })?;
    let map = match doc {
        serde_yaml::Value::Mapping(map) => map,
        serde_yaml::Value::Null => return Ok(argv),
        _ => return Err(ConfigError::NotAMapping { path }),
    };
    let command = T::command();
    for (key, value) in map {
        let key = key.as_str().map(str::to_owned).unwrap_or_default();
        let wanted = normalize(&key);
        let arg = command
            .get_arguments()
            .find(|arg| {
                arg.get_long().is_some_and(|l| normalize(l) == wanted)
                    || arg.get_env().and_then(|e| e.to_str()).is_some_and(|e| normalize(e) == wanted)
            })
            .ok_or_else(|| ConfigError::UnknownKey { path: path.clone(), key: key.clone() })?;
        let Some(long) = arg.get_long() else { continue };
        let given_as_flag = argv
            .iter()
            .any(|a| a.to_str().is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}="))));
        let given_as_env = arg.get_env().and_then(|e| e.to_str()).is_some_and(|e| env(e).is_some());
        if given_as_flag || given_as_env {
            continue;
        }
        let value = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ConfigError::BadValue { path: path.clone(), key });
            }
        };
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            if value == "true" {
                argv.push(format!("--{long}").into());
            }
        } else {
            argv.push(format!("--{long}={value}").into());
        }
    }
    Ok(argv)
}

/// `{prefix}-{hostname}`, with the hostname reduced to characters valid in Pub/Sub ids; in Kubernetes the
/// hostname is the pod name, so each replica gets its own id.
pub fn host_scoped_id(prefix: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let host: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    format!("{prefix}-{host}")
}

fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().filter_map(|a| a.to_str());
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Demo {
        #[command(flatten)]
        config: ConfigFileArgs,
        #[arg(long, env = "DEMO_DATABASE_URL")]
        database_url: Option<String>,
        #[arg(long, env = "DEMO_PORT", default_value_t = 1)]
        port: u16,
        #[arg(long, env = "DEMO_CREATE")]
        create: bool,
    }

    fn too_weak(_: &str) -> Result<String, String> {
        Err("too weak".into())
    }

    #[derive(Debug, Parser)]
    struct WithSecret {
        #[arg(long, hide_env_values = true, value_parser = too_weak)]
        token: Option<String>,
        #[arg(long)]
        port: Option<u16>,
    }

    #[test]
    fn refused_secrets_are_not_quoted_in_errors() {
        let err = WithSecret::try_parse_from(["demo", "--token=hunter2"]).unwrap_err();
        assert!(err.to_string().contains("hunter2"), "clap itself quotes it");
        let shown = without_secrets::<WithSecret>(err).to_string();
        assert!(shown.contains("--token") && shown.contains("too weak"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let err = WithSecret::try_parse_from(["demo", "--port=notaport"]).unwrap_err();
        assert!(without_secrets::<WithSecret>(err).to_string().contains("notaport"), "other values are quoted");
    }

    fn parse_with(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Demo, ConfigError> {
        let dir = std::env::temp_dir().join(format!("livemix-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, yaml).unwrap();
        let mut argv: Vec<OsString> = vec!["demo".into(), "--config".into(), file.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let argv =
            with_config_file::<Demo>(argv, |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| OsString::from(v)))?;
        Ok(Demo::try_parse_from(argv).unwrap())
    }

    #[test]
    fn file_fills_in_what_flags_and_env_leave_unset() {
        let demo = parse_with("DEMO_DATABASE_URL: postgres://file\nport: 7\ncreate: true\n", &[], &[]).unwrap();
        assert_eq!(demo.database_url.as_deref(), Some("postgres://file"));
        assert_eq!(demo.port, 7);
        assert!(demo.create);
    }

    #[test]
    fn flags_win_over_the_file() {
        let demo = parse_with("port: 7\n", &["--port", "9"], &[]).unwrap();
        assert_eq!(demo.port, 9);
    }

    #[test]
    fn env_wins_over_the_file() {
        let demo = parse_with("database_url: postgres://file\n", &[], &[("DEMO_DATABASE_URL", "x")]).unwrap();
        // The env value itself is read by clap from the real environment, so only check the file was skipped.
        assert_eq!(demo.database_url, None);
    }

    #[test]
    fn unknown_keys_are_named_in_the_error() {
        let err = parse_with("colour: blue\n", &[], &[]).unwrap_err();
        assert!(err.to_string().contains("unknown setting \"colour\""), "{err}");
    }
}
