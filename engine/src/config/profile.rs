//! `profile = "..."`: a configuration that starts from another file (a tuning profile from
//! `tuning/`) and overrides some of its keys.
//!
//! Owns finding the files (a profile may itself name a profile) and merging their documents
//! into one. The files are joined into one text, the main file first, each a segment the
//! [`Report`] knows by name; every span of a profile's document is moved to its segment before
//! merging, so a mistake is reported with the file, line and column that hold it, whichever
//! file that is.
//!
//! Finding a profile (the value of the top-level `profile` key):
//! - a value with a `/` or ending in `.toml` is a path, relative to the file that names it;
//! - otherwise it is a name, looked up as `NAME.toml` next to the file that names it, then in
//!   [`DEFAULT_PROFILE_DIR`], where the package installs the profiles;
//! - profiles nest at most [`MAX_PROFILE_DEPTH`] deep, and never in a circle.
//!
//! Merging (the file that names a profile overrides it):
//! - a key the file writes replaces the profile's value; a key it does not write keeps it;
//! - tables (`[runtime]`, `[runtime.glommio]`, `[timeouts]`, ...) merge key by key;
//! - `[[listener]]`, `[[upstream]]`, `[[route]]` and `[[auth]]` entries with the same `name`
//!   merge key by key (a route's `respond`, `rate_limit` or header tables are values, replaced
//!   whole); entries with a new name, or none, come after the profile's;
//! - arrays (`endpoints`, `methods`) are values: replaced whole.
//!
//! Relative paths inside any of the files (`access_log.path`, key files) stay relative to the
//! main file, as if the profile's keys had been written there.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::defaults::{DEFAULT_PROFILE_DIR, MAX_PROFILE_DEPTH};
use super::error::Report;
use super::file::closest;

/// The key that names a profile.
const PROFILE_KEY: &str = "profile";

/// Every file of a configuration, joined: the main file, then its profile, then that one's.
pub(super) struct Sources {
    /// The files' texts joined, each after a line break of its own.
    pub text: String,
    /// Each file: its name (as messages show it) and its byte range in `text`.
    files: Vec<(String, Range<usize>)>,
    /// The profile files, in the order they were followed.
    pub profiles: Vec<PathBuf>,
    /// A `profile` key that names nothing usable: where its value is, and why.
    problem: Option<(Range<usize>, String)>,
}

impl Sources {
    /// Follows the chain of profiles from the main file's text. Reads files, never fails: a
    /// profile that cannot be used is a problem [`Sources::merged`] reports.
    pub fn gather(text: &str, origin: &str) -> Sources {
        let mut sources = Sources {
            text: text.to_owned(),
            files: vec![(origin.to_owned(), 0..text.len())],
            profiles: Vec::new(),
            problem: None,
        };
        let mut chain: Vec<PathBuf> = vec![canonical(Path::new(origin))];
        let mut naming = PathBuf::from(origin);
        while let Some(range) = sources.files.last().map(|(_, range)| range.clone()) {
            let Some((value, span)) = profile_value(&sources.text[range.clone()]) else {
                break;
            };
            let span = span.start + range.start..span.end + range.start;
            let name = match value {
                Ok(name) => name,
                Err(message) => {
                    sources.problem = Some((span, message));
                    break;
                }
            };
            if sources.profiles.len() >= MAX_PROFILE_DEPTH {
                sources.problem = Some((
                    span,
                    format!("profiles nest more than {MAX_PROFILE_DEPTH} deep"),
                ));
                break;
            }
            let path = match find(&naming, &name) {
                Ok(path) => path,
                Err(message) => {
                    sources.problem = Some((span, message));
                    break;
                }
            };
            let id = canonical(&path);
            if chain.contains(&id) {
                let mut names: Vec<String> =
                    sources.files.iter().map(|(name, _)| name.clone()).collect();
                names.push(path.display().to_string());
                sources.problem = Some((
                    span,
                    format!(
                        "profiles name each other in a circle: {}",
                        names.join(" -> ")
                    ),
                ));
                break;
            }
            let profile_text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) => {
                    sources.problem = Some((
                        span,
                        format!("cannot read the profile {}: {err}", path.display()),
                    ));
                    break;
                }
            };
            sources.text.push('\n');
            let start = sources.text.len();
            sources.text.push_str(&profile_text);
            sources
                .files
                .push((path.display().to_string(), start..sources.text.len()));
            chain.push(id);
            sources.profiles.push(path.clone());
            naming = path;
        }
        sources
    }

    /// Each file's name and where it starts, for [`Report::joined`].
    pub fn starts(&self) -> Vec<(&str, usize)> {
        self.files
            .iter()
            .map(|(name, range)| (name.as_str(), range.start))
            .collect()
    }

    /// Parses every file and merges them, the main file over its profile over that one's.
    /// Reports every TOML syntax error (with its file) and a `profile` that names nothing
    /// usable; `None` after either, as checking a half-parsed document, or one without the
    /// keys its profile was to bring, would only add confusing errors.
    pub fn merged<'t>(&'t self, report: &mut Report<'_>) -> Option<Spanned<DeTable<'t>>> {
        let mut documents = Vec::with_capacity(self.files.len());
        let mut syntax = false;
        for (_, range) in &self.files {
            let (document, errors) = DeTable::parse_recoverable(&self.text[range.clone()]);
            for error in errors {
                let message = format!("TOML syntax: {}", one_line(error.message()));
                let span = error.span().map(|span| moved(span, range.start));
                report.error(span, "", message);
                syntax = true;
            }
            documents.push(move_table(document, range.start));
        }
        if let Some((span, message)) = &self.problem {
            report.invalid(span.clone(), PROFILE_KEY, message.clone());
            return None;
        }
        if syntax {
            return None;
        }
        let mut documents = documents.into_iter().rev();
        let mut merged = documents.next()?;
        merged.get_mut().remove(PROFILE_KEY);
        for mut over in documents {
            over.get_mut().remove(PROFILE_KEY);
            let span = over.span();
            let base = merged.into_inner();
            merged = Spanned::new(span, merge_tables(base, over.into_inner(), Level::Top));
        }
        Some(merged)
    }
}

/// The value of a file's top-level `profile` key, relative to the file: its name, or why it is
/// not one. `None` when the file has no such key.
fn profile_value(text: &str) -> Option<(Result<String, String>, Range<usize>)> {
    let (document, _) = DeTable::parse_recoverable(text);
    let value = document.get_ref().get(PROFILE_KEY)?;
    let result = match value.get_ref() {
        DeValue::String(name) if !name.trim().is_empty() => Ok(name.to_string()),
        _ => Err(
            "expected a profile name like \"edge-16core\" or a path like \
                  \"tuning/edge-16core.toml\""
                .to_owned(),
        ),
    };
    Some((result, value.span()))
}

/// Finds the profile `name` names for the file `naming`.
fn find(naming: &Path, name: &str) -> Result<PathBuf, String> {
    let here = naming.parent().unwrap_or(Path::new("")).to_path_buf();
    if name.contains('/') || name.ends_with(".toml") {
        let path = here.join(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("no profile file {}", path.display()))
        };
    }
    let dirs = [here, PathBuf::from(DEFAULT_PROFILE_DIR)];
    if let Some(path) = dirs
        .iter()
        .map(|dir| dir.join(format!("{name}.toml")))
        .find(|path| path.is_file())
    {
        return Ok(path);
    }
    let looked: Vec<String> = dirs
        .iter()
        .map(|dir| match dir.as_os_str().is_empty() {
            true => ".".to_owned(),
            false => dir.display().to_string(),
        })
        .collect();
    let mut message = format!(
        "no profile named {name:?} (looked for {name}.toml in {})",
        looked.join(" and ")
    );
    let known: Vec<String> = dirs.iter().flat_map(|dir| profile_names(dir)).collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    if let Some(best) = closest(name, &known) {
        message.push_str(&format!("; did you mean {best:?}?"));
    }
    Err(message)
}

/// The names of the profiles in a directory (`*.toml`, without the extension).
fn profile_names(dir: &Path) -> Vec<String> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".toml").map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A path as the same file is always named, for telling a circle; the path itself when it
/// cannot be resolved (text that names no file).
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// How deep a merge is: top-level sections merge their tables too; an entry of an array of
/// tables merges its own keys only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Section,
    Entry,
}

/// `base` with `over` written on top.
fn merge_tables<'t>(mut base: DeTable<'t>, over: DeTable<'t>, level: Level) -> DeTable<'t> {
    for (key, value) in over {
        let Some(old) = base.remove(key.get_ref().as_ref()) else {
            base.insert(key, value);
            continue;
        };
        let span = value.span();
        let merged = match (old.into_inner(), value.into_inner(), level) {
            (DeValue::Table(old), DeValue::Table(new), Level::Top | Level::Section) => {
                DeValue::Table(merge_tables(old, new, Level::Section))
            }
            (DeValue::Array(old), DeValue::Array(new), Level::Top)
                if is_tables(&old) && is_tables(&new) =>
            {
                DeValue::Array(merge_entries(old, new))
            }
            (_, new, _) => new,
        };
        base.insert(key, Spanned::new(span, merged));
    }
    base
}

fn is_tables(array: &DeArray<'_>) -> bool {
    array
        .iter()
        .all(|item| matches!(item.get_ref(), DeValue::Table(_)))
}

/// Entries of an array of tables: those of `over` whose `name` an entry of `base` has merge
/// into it, the others come after.
fn merge_entries<'t>(base: DeArray<'t>, over: DeArray<'t>) -> DeArray<'t> {
    let mut entries: Vec<Spanned<DeValue<'t>>> = base.iter().cloned().collect();
    for entry in over.iter().cloned() {
        let name = entry_name(&entry);
        let matching = name.and_then(|name| {
            entries
                .iter()
                .position(|old| entry_name(old) == Some(name.clone()))
        });
        let Some(index) = matching else {
            entries.push(entry);
            continue;
        };
        let span = entry.span();
        let old = std::mem::replace(&mut entries[index], placeholder());
        entries[index] = match (old.into_inner(), entry.into_inner()) {
            (DeValue::Table(old), DeValue::Table(new)) => {
                Spanned::new(span, DeValue::Table(merge_tables(old, new, Level::Entry)))
            }
            (_, new) => Spanned::new(span, new),
        };
    }
    let mut array = DeArray::new();
    for entry in entries {
        array.push(entry);
    }
    array
}

fn entry_name(entry: &Spanned<DeValue<'_>>) -> Option<String> {
    match entry.get_ref() {
        DeValue::Table(table) => match table.get("name")?.get_ref() {
            DeValue::String(name) => Some(name.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn placeholder<'t>() -> Spanned<DeValue<'t>> {
    Spanned::new(0..0, DeValue::Boolean(false))
}

fn moved(span: Range<usize>, by: usize) -> Range<usize> {
    span.start + by..span.end + by
}

/// A document with every span moved `by` bytes: from its own file to its segment.
fn move_table(document: Spanned<DeTable<'_>>, by: usize) -> Spanned<DeTable<'_>> {
    let span = moved(document.span(), by);
    Spanned::new(span, move_entries(document.into_inner(), by))
}

fn move_entries(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    let mut moved_table = DeTable::new();
    for (key, value) in table {
        let key_span = moved(key.span(), by);
        moved_table.insert(
            Spanned::new(key_span, key.into_inner()),
            move_value(value, by),
        );
    }
    moved_table
}

fn move_value(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = moved(value.span(), by);
    let inner = match value.into_inner() {
        DeValue::Table(table) => DeValue::Table(move_entries(table, by)),
        DeValue::Array(items) => {
            let mut array = DeArray::new();
            for item in items.iter().cloned() {
                array.push(move_value(item, by));
            }
            DeValue::Array(array)
        }
        other => other,
    };
    Spanned::new(span, inner)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::config::{Config, Plan};

    /// A fresh directory holding `files` (name, text).
    fn dir(test: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("coregate-profile-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write a test file");
        }
        dir
    }

    fn load(path: &Path) -> Config {
        Config::load(path).unwrap_or_else(|errors| panic!("expected a valid config:\n{errors}"))
    }

    fn errors(path: &Path) -> Vec<String> {
        match Config::load(path) {
            Ok(_) => panic!("expected errors from {}", path.display()),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const EDGE: &str = r#"
[runtime]
ring_entries = 4096
buffer_size = "32KiB"

[runtime.glommio]
ring_depth = 256

[timeouts]
keepalive = "30s"

[[listener]]
name = "public"
bind = "0.0.0.0:80"
backlog = 8192
defer_accept = true
"#;

    #[test]
    fn a_file_overrides_its_profile_key_by_key() {
        let main = r#"profile = "edge"

[runtime]
ring_entries = 2048

[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[listener]]
name = "internal"
bind = "127.0.0.1:1"
"#;
        let d = dir("override", &[("edge.toml", EDGE), ("site.toml", main)]);
        let config = load(&d.join("site.toml"));
        assert_eq!(config.profiles, [d.join("edge.toml")]);
        // The file wins where it writes a key; the profile's other keys stay.
        assert_eq!(config.runtime.ring_entries, 2048);
        assert_eq!(config.runtime.buffer_size, 32 * 1024);
        assert_eq!(config.runtime.glommio.ring_depth, 256);
        assert_eq!(config.timeouts.keepalive, Duration::from_secs(30));
        // Listeners with the same name merge; new ones come after.
        let [public, internal] = &config.listeners[..] else {
            panic!("two listeners expected: {:?}", config.listeners);
        };
        assert_eq!(public.bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(public.backlog, 8192);
        assert!(public.defer_accept);
        assert_eq!(&*internal.name, "internal");
    }

    #[test]
    fn profiles_nest_and_the_nearest_one_wins() {
        let base = "[runtime]\nring_entries = 512\nbuffer_size = \"8KiB\"\n\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n";
        let mid = "profile = \"base\"\n[runtime]\nring_entries = 1024\n";
        let main = "profile = \"mid.toml\"\n[limits]\nmax_head_bytes = \"8KiB\"\n";
        let d = dir(
            "nest",
            &[("base.toml", base), ("mid.toml", mid), ("main.toml", main)],
        );
        let config = load(&d.join("main.toml"));
        assert_eq!(config.runtime.ring_entries, 1024);
        assert_eq!(config.runtime.buffer_size, 8 * 1024);
        assert_eq!(config.limits.max_head_bytes, 8 * 1024);
        assert_eq!(config.profiles, [d.join("mid.toml"), d.join("base.toml")]);
    }

    #[test]
    fn routes_merge_by_name_and_their_tables_are_replaced_whole() {
        let profile = r#"
[[listener]]
name = "l"
bind = "127.0.0.1:0"

[[route]]
name = "health"
path = "/healthz"
respond = { status = 200, body = "ok", headers = { "X-A" = "1" } }
"#;
        let main = r#"profile = "p"
[[route]]
name = "health"
respond = { status = 204 }
"#;
        let d = dir("routes", &[("p.toml", profile), ("main.toml", main)]);
        let config = load(&d.join("main.toml"));
        assert_eq!(config.routes.len(), 1);
        let route = &config.routes[0];
        assert_eq!(
            route.path,
            crate::router::spec::PathPattern::Exact("/healthz".into())
        );
        assert_eq!(
            route.action,
            crate::config::RouteAction::Respond {
                status: 204,
                body: Box::default(),
                headers: vec![]
            }
        );
    }

    #[test]
    fn errors_name_the_file_that_holds_the_bad_key() {
        let profile = "[runtime]\nring_entries = 100\nthreads = 4\n\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n";
        let main = "profile = \"p\"\n\n[runtime]\nbuffer_size = \"1KiB\"\n";
        let d = dir("blame", &[("p.toml", profile), ("main.toml", main)]);
        let p = d.join("p.toml").display().to_string();
        let m = d.join("main.toml").display().to_string();
        assert_eq!(
            errors(&d.join("main.toml")),
            [
                format!(
                    "{m}:4:15: runtime.buffer_size: must be from 4 KiB to 1 MiB (found \"1KiB\")"
                ),
                format!(
                    "{p}:2:16: runtime.ring_entries: must be a power of two, like 64 or 128 \
                     (found 100)"
                ),
                format!(
                    "{p}:3:1: runtime.threads: unknown key (accepted here: cores, exclude, io, \
                     ring_entries, buffer_size, buffers_per_shard, max_connections, idle_wait, \
                     glommio)"
                ),
            ]
        );
        // A syntax error in a profile names the profile.
        let d = dir(
            "syntax",
            &[("p.toml", "[runtime\n"), ("main.toml", "profile = \"p\"\n")],
        );
        let all = errors(&d.join("main.toml"));
        let p = d.join("p.toml").display().to_string();
        assert!(
            all.len() == 1 && all[0].starts_with(&format!("{p}:1:")),
            "{all:?}"
        );
    }

    #[test]
    fn a_plan_error_names_the_profile_that_chose_the_cores() {
        let profile =
            "[runtime]\ncores = \"node4\"\n\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n";
        let d = dir(
            "plan",
            &[("p.toml", profile), ("main.toml", "profile = \"p\"\n")],
        );
        let config = load(&d.join("main.toml"));
        let error = Plan::with_cpus(&config, &[0, 1]).unwrap_err().to_string();
        let p = d.join("p.toml").display().to_string();
        assert_eq!(
            error,
            format!(
                "{p}:2:9: runtime.cores: NUMA node 4 does not exist on this machine (it has \
                 node 0) (found \"node4\")"
            )
        );
    }

    #[test]
    fn a_profile_that_names_nothing_usable_is_an_error() {
        let d = dir(
            "missing",
            &[
                ("edge-16core.toml", EDGE),
                ("main.toml", "profile = \"edge-16cor\"\n"),
            ],
        );
        let m = d.join("main.toml").display().to_string();
        assert_eq!(
            errors(&d.join("main.toml")),
            [format!(
                "{m}:1:11: profile: no profile named \"edge-16cor\" (looked for edge-16cor.toml \
                 in {} and /usr/share/coregate/tuning); did you mean \"edge-16core\"? (found \
                 \"edge-16cor\")",
                d.display()
            )]
        );

        let d = dir("path", &[("main.toml", "profile = \"tuning/none.toml\"\n")]);
        let all = errors(&d.join("main.toml"));
        assert!(
            all[0].contains("profile: no profile file ") && all[0].contains("tuning/none.toml"),
            "{all:?}"
        );

        let d = dir("type", &[("main.toml", "profile = 3\n")]);
        let all = errors(&d.join("main.toml"));
        assert!(
            all[0].contains(":1:11: profile: expected a profile name"),
            "{all:?}"
        );

        let d = dir(
            "circle",
            &[
                ("a.toml", "profile = \"b\"\n"),
                ("b.toml", "profile = \"a\"\n"),
            ],
        );
        let all = errors(&d.join("a.toml"));
        let (a, b) = (d.join("a.toml"), d.join("b.toml"));
        assert!(
            all[0].starts_with(&format!(
                "{}:1:11: profile: profiles name each other in a circle: {} -> {} -> {}",
                b.display(),
                a.display(),
                b.display(),
                a.display()
            )),
            "{all:?}"
        );
    }
}
