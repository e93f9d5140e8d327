//! The VE's resolv.conf, from its name server and search domain settings (`inherit`
//! takes the host's).

use super::NetConfig;

/// resolv.conf for the VE, or None when no DNS settings were given.
pub fn resolv_conf(c: &NetConfig) -> Option<String> {
    if c.nameservers.is_none() && c.searchdomains.is_none() {
        return None;
    }
    let search = expand(c.searchdomains.as_deref(), "search");
    let ns = expand(c.nameservers.as_deref(), "nameserver");
    Some(render(&search, &ns, &[]))
}

/// The words after `key` on its lines of a resolv.conf.
fn words(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key))
        .filter(|rest| rest.starts_with([' ', '\t']))
        .flat_map(|rest| {
            rest.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A setting's words, `inherit` taking the host's.
fn expand(v: Option<&[String]>, key: &str) -> Vec<String> {
    match v {
        Some(v) if v.iter().any(|x| x == "inherit") => words(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            key,
        ),
        Some(v) => v.to_vec(),
        None => Vec::new(),
    }
}

fn render(search: &[String], ns: &[String], rest: &[&str]) -> String {
    let mut out = String::from("# written by vzrun\n");
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for n in ns {
        out.push_str(&format!("nameserver {n}\n"));
    }
    for l in rest {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A VE's resolv.conf `old` with new name servers and/or search domains: what is not
/// given stays as it was (`ve set --nameserver` keeps the search domains), and so do
/// its other lines (`options`, `sortlist`).
pub fn update_resolv_conf(
    old: &str,
    nameservers: Option<&[String]>,
    searchdomains: Option<&[String]>,
) -> String {
    let search = match searchdomains {
        Some(_) => expand(searchdomains, "search"),
        None => words(old, "search"),
    };
    let ns = match nameservers {
        Some(_) => expand(nameservers, "nameserver"),
        None => words(old, "nameserver"),
    };
    let keyword = |l: &str, k: &str| {
        l.strip_prefix(k)
            .is_some_and(|r| r.starts_with([' ', '\t']))
    };
    let rest: Vec<&str> = old
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty()
                && *l != "# written by vzrun"
                && !keyword(l, "search")
                && !keyword(l, "domain")
                && !keyword(l, "nameserver")
        })
        .collect();
    render(&search, &ns, &rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ve::test_annotations as ann;

    #[test]
    fn dns_words_and_inherit() {
        let c = NetConfig::parse(&ann(&[
            ("net.nameserver", "198.51.100.53,2001:db8::53"),
            ("net.searchdomain", "example.test"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(resolv_conf(&c).unwrap(), "# written by vzrun\nsearch example.test\nnameserver 198.51.100.53\nnameserver 2001:db8::53\n");
    }

    #[test]
    fn an_update_keeps_what_it_does_not_change() {
        let old = "search example.test corp.test\nnameserver 198.51.100.1\noptions ndots:2\n";
        let new = update_resolv_conf(old, Some(&["198.51.100.53".to_string()]), None);
        assert_eq!(
            new,
            "# written by vzrun\nsearch example.test corp.test\nnameserver 198.51.100.53\noptions ndots:2\n"
        );
        let new = update_resolv_conf(&new, None, Some(&["other.test".to_string()]));
        assert!(
            new.contains("search other.test\nnameserver 198.51.100.53\n"),
            "{new}"
        );
        assert!(!new.contains("example.test"), "{new}");
    }
}
