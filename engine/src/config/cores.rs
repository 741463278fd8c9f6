//! The `runtime.cores` grammar: which CPUs get a shard.
//!
//! Owns parsing and printing CPU lists in the Linux `cpulist` style (`"0-3,6"`, as in
//! `/sys/devices/system/cpu/online` and `taskset -c`). Whether a CPU exists and may be used is
//! decided later, by [`super::plan`], against this process's affinity mask.

use std::fmt;

/// The highest CPU number a list may name. CPU sets are `cpu_set_t` (1024 bits), which is also
/// what `sched_setaffinity` pins shards with.
pub const MAX_CPU: usize = libc::CPU_SETSIZE as usize - 1;

/// Parses `"3"`, `"0-3"` or `"0-3,6,8-9"` into ascending CPU numbers. Ranges are inclusive;
/// a CPU named twice is an error (it would mean two shards pinned to one core).
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("empty item in the CPU list; write \"0-3\" or \"0,2,4\"".into());
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
        cpus.extend(first..=last);
    }
    sort_unique(cpus)
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

    #[test]
    fn lists_take_numbers_ranges_and_commas() {
        assert_eq!(parse_cpu_list("3"), Ok(vec![3]));
        assert_eq!(parse_cpu_list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse_cpu_list("0-3,6"), Ok(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("8-9, 1"), Ok(vec![1, 8, 9]));
        assert_eq!(parse_cpu_list("2-2"), Ok(vec![2]));
    }

    #[test]
    fn lists_refuse_mistakes() {
        assert!(parse_cpu_list("").unwrap_err().contains("empty item"));
        assert!(parse_cpu_list("0-3,").unwrap_err().contains("empty item"));
        assert!(parse_cpu_list("3-0").unwrap_err().contains("write 0-3"));
        assert!(
            parse_cpu_list("0-3,2")
                .unwrap_err()
                .contains("CPU 2 is listed twice")
        );
        assert!(
            parse_cpu_list("one")
                .unwrap_err()
                .contains("not a CPU number")
        );
        assert!(
            parse_cpu_list("-1")
                .unwrap_err()
                .contains("not a CPU number")
        );
        assert!(
            parse_cpu_list("0-")
                .unwrap_err()
                .contains("not a CPU number")
        );
        assert!(
            parse_cpu_list("5000")
                .unwrap_err()
                .contains("highest CPU number")
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
