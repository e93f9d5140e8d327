//! The VE's resolv.conf, from its name server and search domain settings (`inherit`
//! takes the host's).

use super::NetConfig;

/// resolv.conf for the VE, or None when no DNS settings were given.
pub fn resolv_conf(c: &NetConfig) -> Option<String> {
    if c.nameservers.is_none() && c.searchdomains.is_none() {
        return None;
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host_words = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| l.strip_prefix(key))
            .flat_map(|rest| {
                rest.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let expand = |v: &Option<Vec<String>>, key: &str| -> Vec<String> {
        match v {
            Some(v) if v.iter().any(|x| x == "inherit") => host_words(key),
            Some(v) => v.clone(),
            None => Vec::new(),
        }
    };
    let mut out = String::from("# written by vzrun\n");
    let search = expand(&c.searchdomains, "search");
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in expand(&c.nameservers, "nameserver") {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    Some(out)
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
}
