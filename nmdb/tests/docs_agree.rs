//! `nmdb -h`, the defaults in the code and `man/nmdb.1` cannot disagree.

mod support;

use nmdb_server::config::defaults;
use std::collections::BTreeMap;

const MAN: &str = include_str!("../../man/nmdb.1");

/// Option -> default, as `nmdb -h` prints them.
fn help_options() -> BTreeMap<String, Option<String>> {
    let out = std::process::Command::new(support::nmdb_bin())
        .arg("-h")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut options = BTreeMap::new();
    for line in help.lines().map(str::trim_start) {
        let Some(rest) = line.strip_prefix('-') else {
            continue;
        };
        let name: String = std::iter::once('-')
            .chain(rest.chars().take_while(|c| !c.is_whitespace() && *c != ','))
            .collect();
        let default = line.find("[default: ").map(|at| {
            let d = &line[at + "[default: ".len()..];
            d[..d.find(']').unwrap()].to_string()
        });
        options.insert(name, default);
    }
    options
}

/// A roff fragment as the reader sees it: macros and escapes dropped,
/// lines joined.
fn plain(roff: &str) -> String {
    let words: Vec<String> = roff
        .lines()
        .map(|l| {
            if l.starts_with('.') {
                l.split_once(' ').map_or("", |(_, rest)| rest)
            } else {
                l
            }
        })
        .map(|l| l.replace("\\-", "-").replace('"', ""))
        .collect();
    words
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" ,", ",")
        .replace(" .", ".")
}

/// The paragraph of `nmdb.1` that documents `option` (e.g. "-c"), as
/// plain text.
fn man_paragraph(option: &str) -> String {
    let escaped = option.replace('-', "\\-");
    let mut lines = MAN.lines().skip_while(|l| {
        !(l.starts_with(".B") && l.contains(&format!("{escaped} "))
            || l.starts_with(".B") && l.ends_with(&escaped)
            || l.contains(&format!("{escaped} \",")))
    });
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("{option} is not documented in nmdb.1"));
    let body: Vec<&str> = lines
        .take_while(|l| !l.starts_with(".TP") && !l.starts_with(".SH"))
        .collect();
    plain(&format!("{head}\n{}", body.join("\n")))
}

#[test]
fn every_help_option_is_in_the_man_page_with_the_same_default() {
    let options = help_options();
    assert!(options.len() >= 20, "help lists {options:?}");
    for (option, default) in &options {
        if option == "-h" || option == "--help" {
            continue;
        }
        let paragraph = man_paragraph(option);
        if let Some(d) = default {
            assert!(
                paragraph.contains(&format!("Default: {d}"))
                    || paragraph.contains(&format!("{d} (default)")),
                "{option}: help says default {d}, nmdb.1 says:\n{paragraph}"
            );
        }
    }
}

#[test]
fn man_page_defaults_are_the_codes_defaults() {
    let expect = [
        ("-d", format!("Default: {},", defaults::DB_PATH)),
        ("-l", format!("Default: {}.", defaults::TIPC_LOWER)),
        ("-t", format!("Default: {}.", defaults::TCP_PORT)),
        ("-u", format!("Default: {}.", defaults::UDP_PORT)),
        ("-s", format!("Default: {}.", defaults::SCTP_PORT)),
        ("-T", format!("Default: {} ", defaults::LISTEN_ADDR)),
        ("-c", format!("Default: {}.", defaults::CACHE_THOUSANDS)),
        ("-c", format!("(multiplied by {})", defaults::CACHE_UNIT)),
        ("-b", format!("{} (default)", defaults::BACKEND)),
    ];
    for (option, text) in expect {
        let paragraph = man_paragraph(option);
        assert!(
            paragraph.contains(&text),
            "{option}: nmdb.1 lacks '{text}':\n{paragraph}"
        );
    }
}

#[test]
fn man_page_documents_no_option_the_server_lacks() {
    let options = help_options();
    for line in MAN
        .lines()
        .filter(|l| l.starts_with(".BI \\-") || l.starts_with(".B \\-") || l.starts_with(".BR \\-"))
    {
        for word in line.split_whitespace().skip(1) {
            let word = word
                .trim_matches(|c| c == '"' || c == ',')
                .replace("\\-", "-");
            if word.starts_with('-') && word.len() > 1 {
                assert!(
                    options.contains_key(&word),
                    "nmdb.1 documents {word}, which nmdb -h does not list"
                );
            }
        }
    }
}

#[test]
fn man_page_renders_without_warnings() {
    let page = support::package_dir().join("../man/nmdb.1");
    let out = std::process::Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff (groff-base) installed");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The THREADS section of `nmdb.1`, as text (troff's `\-` as `-`).
fn threads_section() -> String {
    let start = MAN.find(".SH THREADS").expect("nmdb.1 has THREADS");
    let end = start
        + MAN[start..]
            .find("\n.SH METRICS")
            .expect("METRICS follows THREADS");
    MAN[start..end].replace("\\-", "-")
}

/// The names of process `pid`'s threads, numbered ones (nmdb-net-0,
/// nmdb-net-1...) as documented: nmdb-net-N.
fn thread_names(pid: i32) -> std::collections::BTreeSet<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for task in tasks.flatten() {
        // A thread that ended since the listing has no name to read.
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        let name = match comm.trim_end().rsplit_once('-') {
            Some((stem, n)) if n.bytes().all(|b| b.is_ascii_digit()) => format!("{stem}-N"),
            _ => comm.trim_end().to_owned(),
        };
        seen.insert(name);
    }
    seen
}

#[test]
fn every_thread_of_a_running_server_is_documented() {
    let dir = support::TempDir::new("threads");
    let server = support::TestServer::start(&dir, &["--metrics", "127.0.0.1:0"]);
    // A scrape, for the thread that encodes it.
    let metrics = support::scrape(server.listening_on("metrics"));
    assert!(metrics.contains("nmdb_cache_get_total"), "{metrics}");
    let section = threads_section();
    let expected = [
        "nmdb",
        "nmdb-net-N",
        "nmdb-accept",
        "nmdb-udp-N",
        "nmdb-db-N",
        "nmdb-commit",
        "nmdb-blocking",
    ];
    // A thread takes its name once it runs, which on a busy machine can be
    // after the server says it is ready: until then it shows as "nmdb".
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let seen = loop {
        let seen = thread_names(server.pid());
        if expected.iter().all(|e| seen.contains(*e)) || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    for name in &seen {
        assert!(
            section.contains(name.as_str()),
            "thread {name} is not in THREADS of nmdb.1"
        );
    }
    for expected in expected {
        assert!(
            seen.contains(expected),
            "no {expected} thread among {seen:?}"
        );
    }
    server.stop();
}
