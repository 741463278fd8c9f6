//! The `runtime.cores` grammar: which CPUs get a shard.
//!
//! Owns parsing and printing what operators write elsewhere: CPU lists in the Linux `cpulist`
//! style (`"0-3,6"`, as in `/sys/devices/system/cpu/online` and `taskset -c`), `"all"`, "all
//! but" (`"all,^0-1"`, or the `runtime.exclude` key), one shard per physical core
//! (`"physical"`) and NUMA nodes (`"node1"`). Words that need the machine's topology are kept
//! as a [`CoreRule`]; [`super::plan`] resolves them against `/sys` and this process's affinity
//! mask, and decides whether the CPUs exist and may be used.

use std::fmt;

use super::CoreSelection;

/// The highest CPU number a list may name. CPU sets are `cpu_set_t` (1024 bits), which is also
/// what `sched_setaffinity` pins shards with.
pub const MAX_CPU: usize = libc::CPU_SETSIZE as usize - 1;

/// The highest NUMA node number a selection may name (the kernel's `MAX_NUMNODES` is at most
/// 1024).
pub const MAX_NODE: usize = 1023;

/// A selection that needs the machine's topology, or takes CPUs away: the union of `include`,
/// reduced to one CPU per physical core (the lowest-numbered of its CPUs that was included)
/// when `physical` is set, minus `exclude`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRule {
    /// Never empty.
    pub include: Vec<CoreSet>,
    pub physical: bool,
    pub exclude: Vec<CoreSet>,
}

/// The CPUs one item of a selection names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreSet {
    /// Every CPU this process may run on.
    All,
    /// These CPUs, ascending.
    Cpus(Vec<usize>),
    /// The CPUs of these NUMA nodes; node numbers ascending.
    Nodes(Vec<usize>),
}

/// The words a selection may hold besides numbers, for "did you mean".
const WORDS: [&str; 3] = ["all", "physical", "node0"];

/// What a `runtime.cores` string may look like, for messages.
const SHAPES: &str =
    "write \"all\", \"0-3,6\", \"all,^0-1\", \"physical\", \"node1\" or an array like [1, 3]";

/// Parses a `runtime.cores` string: comma-separated items, each `all`, `physical`, a CPU or
/// range (`3`, `2-15`), a NUMA node or range of nodes (`node1`, `node0-1`), or one of those
/// (not `all` or `physical`) after `^` to take its CPUs away. Plain lists stay
/// [`CoreSelection::List`] and `"all"` alone [`CoreSelection::All`]; the rest is a
/// [`CoreRule`].
pub fn parse_selection(text: &str) -> Result<CoreSelection, String> {
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    let mut physical = false;
    // CPUs named one by one, which must not repeat (two shards on one CPU).
    let mut listed = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty item in the CPU list; {SHAPES}"));
        }
        if let Some(rest) = item.strip_prefix('^') {
            let rest = rest.trim();
            if rest == "all" || rest == "physical" {
                return Err(format!(
                    "\"^{rest}\" would take every CPU away; write what to take away, like \
                     \"^0-1\" or \"^node0\""
                ));
            }
            exclude.push(parse_set(rest)?);
            continue;
        }
        match item {
            "all" => include.push(CoreSet::All),
            "physical" => physical = true,
            _ => {
                let set = parse_set(item)?;
                if let CoreSet::Cpus(cpus) = &set {
                    listed.extend_from_slice(cpus);
                }
                include.push(set);
            }
        }
    }
    sort_unique(listed)?;
    if include.is_empty() {
        if !physical {
            return Err(format!(
                "only takes CPUs away; say what they are taken from, like \"all,{}\"",
                text.trim()
            ));
        }
        include.push(CoreSet::All);
    }
    Ok(simplify(include, physical, exclude))
}

/// Parses `runtime.exclude`: CPUs and NUMA nodes as in `runtime.cores`, without `^`.
pub fn parse_exclusion(text: &str) -> Result<Vec<CoreSet>, String> {
    let mut sets = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        match item {
            "" => return Err("empty item in the CPU list; write \"0-1\" or \"0,2,node1\"".into()),
            "all" | "physical" => {
                return Err(format!(
                    "\"{item}\" cannot be excluded; name the CPUs or nodes to keep free, like \
                     \"0-1\" or \"node0\""
                ));
            }
            _ => sets.push(parse_set(item.strip_prefix('^').unwrap_or(item).trim())?),
        }
    }
    Ok(sets)
}

/// `runtime.cores` with `runtime.exclude` applied.
pub fn with_exclusion(selection: CoreSelection, exclude: Vec<CoreSet>) -> CoreSelection {
    if exclude.is_empty() {
        return selection;
    }
    let rule = match selection {
        CoreSelection::All => CoreRule {
            include: vec![CoreSet::All],
            physical: false,
            exclude: Vec::new(),
        },
        CoreSelection::List(cpus) => CoreRule {
            include: vec![CoreSet::Cpus(cpus)],
            physical: false,
            exclude: Vec::new(),
        },
        CoreSelection::Rule(rule) => rule,
    };
    let mut all_exclude = rule.exclude;
    all_exclude.extend(exclude);
    simplify(rule.include, rule.physical, all_exclude)
}

/// Joins the sets of each kind, so a rule prints and compares the same however it was written;
/// a rule that needs nothing of the topology becomes a plain selection.
fn simplify(include: Vec<CoreSet>, physical: bool, exclude: Vec<CoreSet>) -> CoreSelection {
    let include = join_sets(include);
    let exclude = join_sets(exclude);
    if !physical && exclude.is_empty() {
        match include.as_slice() {
            [CoreSet::All] => return CoreSelection::All,
            [CoreSet::Cpus(cpus)] => return CoreSelection::List(cpus.clone()),
            _ => {}
        }
    }
    CoreSelection::Rule(CoreRule {
        include,
        physical,
        exclude,
    })
}

fn join_sets(sets: Vec<CoreSet>) -> Vec<CoreSet> {
    let mut all = false;
    let mut cpus = Vec::new();
    let mut nodes = Vec::new();
    for set in sets {
        match set {
            CoreSet::All => all = true,
            CoreSet::Cpus(more) => cpus.extend(more),
            CoreSet::Nodes(more) => nodes.extend(more),
        }
    }
    if all {
        return vec![CoreSet::All];
    }
    cpus.sort_unstable();
    cpus.dedup();
    nodes.sort_unstable();
    nodes.dedup();
    let mut joined = Vec::new();
    if !cpus.is_empty() {
        joined.push(CoreSet::Cpus(cpus));
    }
    if !nodes.is_empty() {
        joined.push(CoreSet::Nodes(nodes));
    }
    joined
}

/// One item naming CPUs: `3`, `2-15`, `node1` or `node0-1`.
fn parse_set(item: &str) -> Result<CoreSet, String> {
    if let Some(nodes) = item.strip_prefix("node") {
        let (first, last) = match nodes.split_once('-') {
            Some((a, b)) => (node_number(a, item)?, node_number(b, item)?),
            None => {
                let node = node_number(nodes, item)?;
                (node, node)
            }
        };
        if first > last {
            return Err(format!(
                "node range {item} runs backwards; write node{last}-{first}"
            ));
        }
        return Ok(CoreSet::Nodes((first..=last).collect()));
    }
    if item.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(unknown_word(item));
    }
    let (first, last) = match item.split_once('-') {
        Some((a, b)) => (cpu_number(a)?, cpu_number(b)?),
        None => {
            let cpu = cpu_number(item)?;
            (cpu, cpu)
        }
    };
    if first > last {
        return Err(format!("range {item} runs backwards; write {last}-{first}"));
    }
    Ok(CoreSet::Cpus((first..=last).collect()))
}

fn node_number(text: &str, item: &str) -> Result<usize, String> {
    let text = text.trim();
    match text.parse::<usize>() {
        Ok(node) if node <= MAX_NODE && text.bytes().all(|b| b.is_ascii_digit()) => Ok(node),
        Ok(_) => Err(format!(
            "NUMA node {text} is above the highest node number ({MAX_NODE})"
        )),
        Err(_) => Err(format!(
            "{item:?} is not a NUMA node; write \"node0\", \"node1\" or \"node0-1\""
        )),
    }
}

fn unknown_word(item: &str) -> String {
    let lower = item.to_ascii_lowercase();
    let suggestion = if WORDS.contains(&lower.as_str()) {
        Some(lower)
    } else if lower.starts_with("numa") || lower.starts_with("nod") {
        Some("node0".to_owned())
    } else {
        super::file::closest(&lower, &WORDS).map(str::to_owned)
    };
    match suggestion {
        Some(word) => format!(
            "{item:?} is not a CPU number or a word coregate knows; did you mean \"{word}\"? \
             ({SHAPES})"
        ),
        None => format!("{item:?} is not a CPU number or a word coregate knows; {SHAPES}"),
    }
}

impl fmt::Display for CoreSelection {
    /// The selection as `runtime.cores` would write it (`runtime.exclude` folded in as `^`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreSelection::All => f.write_str("all"),
            CoreSelection::List(cpus) => write!(f, "{}", CpuList(cpus)),
            CoreSelection::Rule(rule) => {
                let mut items: Vec<String> = Vec::new();
                if !(rule.physical && rule.include == [CoreSet::All]) {
                    items.extend(rule.include.iter().map(|set| set.to_string()));
                }
                if rule.physical {
                    items.push("physical".into());
                }
                items.extend(rule.exclude.iter().map(|set| format!("^{set}")));
                f.write_str(&items.join(","))
            }
        }
    }
}

impl fmt::Display for CoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreSet::All => f.write_str("all"),
            CoreSet::Cpus(cpus) => write!(f, "{}", CpuList(cpus)),
            CoreSet::Nodes(nodes) => {
                // node0-1,node3: each run of node numbers as one item.
                let text = CpuList(nodes).to_string();
                let items: Vec<String> = text.split(',').map(|run| format!("node{run}")).collect();
                f.write_str(&items.join(","))
            }
        }
    }
}

/// Checks CPU numbers written as a TOML array, sorting them.
pub fn check_cpu_array(cpus: Vec<usize>) -> Result<Vec<usize>, String> {
    if cpus.is_empty() {
        return Err("the CPU list is empty; a shard needs at least one CPU".into());
    }
    if let Some(cpu) = cpus.iter().find(|&&cpu| cpu > MAX_CPU) {
        return Err(format!(
            "CPU {cpu} is above the highest CPU number ({MAX_CPU})"
        ));
    }
    sort_unique(cpus)
}

fn cpu_number(text: &str) -> Result<usize, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a CPU number; write \"all\", \"0-3\", \"0,2,4\" or an array"
        ));
    }
    match text.parse::<usize>() {
        Ok(cpu) if cpu <= MAX_CPU => Ok(cpu),
        _ => Err(format!(
            "CPU {text} is above the highest CPU number ({MAX_CPU})"
        )),
    }
}

fn sort_unique(mut cpus: Vec<usize>) -> Result<Vec<usize>, String> {
    cpus.sort_unstable();
    if let Some(pair) = cpus.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!(
            "CPU {} is listed twice; each CPU runs at most one shard",
            pair[0]
        ));
    }
    Ok(cpus)
}

/// Prints ascending CPU numbers back in `cpulist` style: `[0, 1, 2, 3, 6]` -> `0-3,6`.
pub struct CpuList<'a>(pub &'a [usize]);

impl fmt::Display for CpuList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        while let Some(&start) = rest.first() {
            let run = rest
                .iter()
                .enumerate()
                .take_while(|&(i, &cpu)| cpu == start + i)
                .count();
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match run {
                1 => write!(f, "{start}")?,
                _ => write!(f, "{start}-{}", start + run - 1)?,
            }
            rest = &rest[run..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Result<Vec<usize>, String> {
        match parse_selection(text)? {
            CoreSelection::List(cpus) => Ok(cpus),
            other => panic!("{text:?} is not a plain list: {other:?}"),
        }
    }

    fn rule(include: Vec<CoreSet>, physical: bool, exclude: Vec<CoreSet>) -> CoreSelection {
        CoreSelection::Rule(CoreRule {
            include,
            physical,
            exclude,
        })
    }

    #[test]
    fn lists_take_numbers_ranges_and_commas() {
        assert_eq!(list("3"), Ok(vec![3]));
        assert_eq!(list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(list("0-3,6"), Ok(vec![0, 1, 2, 3, 6]));
        assert_eq!(list("8-9, 1"), Ok(vec![1, 8, 9]));
        assert_eq!(list("2-2"), Ok(vec![2]));
        assert_eq!(parse_selection("all"), Ok(CoreSelection::All));
    }

    #[test]
    fn lists_refuse_mistakes() {
        let err = |text: &str| parse_selection(text).unwrap_err();
        assert!(err("").contains("empty item"));
        assert!(err("0-3,").contains("empty item"));
        assert!(err("3-0").contains("write 0-3"));
        assert!(err("0-3,2").contains("CPU 2 is listed twice"));
        assert!(err("one").contains("not a CPU number"));
        assert!(err("-1").contains("not a CPU number"));
        assert!(err("0-").contains("not a CPU number"));
        assert!(err("5000").contains("highest CPU number"));
    }

    #[test]
    fn all_but_takes_cpus_and_nodes_away() {
        assert_eq!(
            parse_selection("all,^0-1"),
            Ok(rule(
                vec![CoreSet::All],
                false,
                vec![CoreSet::Cpus(vec![0, 1])]
            ))
        );
        assert_eq!(
            parse_selection("0-7, ^3, ^node1"),
            Ok(rule(
                vec![CoreSet::Cpus((0..=7).collect())],
                false,
                vec![CoreSet::Cpus(vec![3]), CoreSet::Nodes(vec![1])]
            ))
        );
        // A CPU both named and taken away is fine: the exclusion wins.
        assert!(parse_selection("2-5,^2").is_ok());
    }

    #[test]
    fn physical_and_nodes_need_the_topology() {
        assert_eq!(
            parse_selection("physical"),
            Ok(rule(vec![CoreSet::All], true, vec![]))
        );
        assert_eq!(
            parse_selection("node1,physical"),
            Ok(rule(vec![CoreSet::Nodes(vec![1])], true, vec![]))
        );
        assert_eq!(
            parse_selection("node0-1,node3"),
            Ok(rule(vec![CoreSet::Nodes(vec![0, 1, 3])], false, vec![]))
        );
        assert_eq!(
            parse_selection("all,physical,^0"),
            Ok(rule(vec![CoreSet::All], true, vec![CoreSet::Cpus(vec![0])]))
        );
    }

    #[test]
    fn selections_print_as_they_would_be_written() {
        for text in [
            "all",
            "0-3,6",
            "all,^0-1",
            "physical",
            "physical,^0",
            "node1,physical",
            "node0-1,node3",
            "2-15,node1,^4,^node0",
        ] {
            let selection = parse_selection(text).unwrap();
            assert_eq!(selection.to_string(), text);
            assert_eq!(parse_selection(&selection.to_string()), Ok(selection));
        }
        // Written in another order or with repeats, the same selection.
        assert_eq!(
            parse_selection("^1, all, ^0").unwrap().to_string(),
            "all,^0-1"
        );
    }

    #[test]
    fn selection_mistakes_say_what_to_write() {
        let err = |text: &str| parse_selection(text).unwrap_err();
        assert!(err("^0-1").contains("like \"all,^0-1\""), "{}", err("^0-1"));
        assert!(err("all,^all").contains("would take every CPU away"));
        assert!(err("phyiscal").contains("did you mean \"physical\"?"));
        assert!(err("ALL").contains("did you mean \"all\"?"));
        assert!(err("numa1").contains("did you mean \"node0\"?"));
        assert!(err("nodeX").contains("not a NUMA node"));
        assert!(err("node3-1").contains("write node1-3"));
        assert!(err("node5000").contains("highest node number"));
    }

    #[test]
    fn exclusions_take_cpus_and_nodes() {
        assert_eq!(parse_exclusion("0-1"), Ok(vec![CoreSet::Cpus(vec![0, 1])]));
        assert_eq!(
            parse_exclusion("node0, 8"),
            Ok(vec![CoreSet::Nodes(vec![0]), CoreSet::Cpus(vec![8])])
        );
        assert!(
            parse_exclusion("all")
                .unwrap_err()
                .contains("cannot be excluded")
        );
        assert_eq!(
            with_exclusion(CoreSelection::All, vec![CoreSet::Cpus(vec![0])]).to_string(),
            "all,^0"
        );
        assert_eq!(
            with_exclusion(CoreSelection::List(vec![1, 2]), vec![]),
            CoreSelection::List(vec![1, 2])
        );
    }

    #[test]
    fn arrays_are_sorted_and_checked() {
        assert_eq!(check_cpu_array(vec![3, 1]), Ok(vec![1, 3]));
        assert!(check_cpu_array(vec![]).unwrap_err().contains("empty"));
        assert!(check_cpu_array(vec![1, 1]).unwrap_err().contains("twice"));
        assert!(check_cpu_array(vec![4096]).unwrap_err().contains("highest"));
    }

    #[test]
    fn lists_print_as_cpulist() {
        assert_eq!(CpuList(&[0, 1, 2, 3, 6]).to_string(), "0-3,6");
        assert_eq!(CpuList(&[1, 3]).to_string(), "1,3");
        assert_eq!(CpuList(&[5]).to_string(), "5");
        assert_eq!(CpuList(&[]).to_string(), "");
    }
}
