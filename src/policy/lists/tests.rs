use proptest::prelude::*;

use super::*;

fn patterns(text: &str) -> Vec<String> {
    let parsed = parse_host_list(text);
    assert!(parsed.is_clean(), "{:?}", parsed.issues);
    parsed.entries.patterns().map(|p| p.to_string()).collect()
}

fn issue_lines(text: &str) -> Vec<u32> {
    parse_host_list(text)
        .issues
        .iter()
        .map(|i| i.line)
        .collect()
}

#[test]
fn the_three_formats_and_comments() {
    let text = "# a blocklist\n\
                [Adblock Plus 2.0]\n\
                ! adblock comment\n\
                ads.example\n\
                *.track.example   # trailing comment\n\
                .Cdn.Example.\n\
                0.0.0.0 one.example two.example\n\
                127.0.0.1\tthree.example\n\
                ::1 four.example\n\
                ||Five.Example^\n\
                \n   \n\
                192.0.2.7\n";
    assert_eq!(
        patterns(text),
        [
            "ads.example",
            "*.track.example",
            ".cdn.example",
            "one.example",
            "two.example",
            "three.example",
            "four.example",
            ".five.example",
            "192.0.2.7",
        ]
    );
}

#[test]
fn every_bad_line_is_reported_with_its_number() {
    let text = "good.example\n\
                10.0.0.1 real-address.example\n\
                site.example##.banner\n\
                ||opt.example^$third-party\n\
                two words\n\
                bad_*.example\n\
                0.0.0.0 ok.example bad..example\n\
                ||*.x.example^\n\
                10.0.0.0/8\n\
                also-good.example\n";
    assert_eq!(issue_lines(text), [2, 3, 4, 5, 6, 7, 8, 9]);
    let parsed = parse_host_list(text);
    let kept: Vec<String> = parsed.entries.patterns().map(|p| p.to_string()).collect();
    // A bad hosts-file line keeps none of its names: all or nothing.
    assert_eq!(kept, ["good.example", "also-good.example"]);
    assert!(
        parsed.issues[0].message.contains("hosts"),
        "{:?}",
        parsed.issues[0]
    );
}

#[test]
fn issues_past_the_cap_are_counted() {
    let text = "x y\n".repeat(MAX_LIST_ISSUES + 5);
    let parsed = parse_host_list(&text);
    assert_eq!(parsed.issues.len(), MAX_LIST_ISSUES);
    assert_eq!(parsed.more_issues, 5);
}

#[test]
fn net_lists() {
    let parsed =
        parse_net_list("# nets\n10.0.0.0/8\n192.0.2.1\n[::1]\n10.1.2.3/16 # host bits\nnope\n");
    let nets: Vec<String> = parsed.entries.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        nets,
        ["10.0.0.0/8", "192.0.2.1/32", "::1/128", "10.1.0.0/16"]
    );
    assert_eq!(parsed.issues.len(), 1);
    assert_eq!(parsed.issues[0].line, 6);
}

const LABELS: [&str; 6] = ["a", "ads", "b-2", "x_y", "cdn", "example"];

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LABELS.to_vec()), 1..4).prop_map(|l| l.join("."))
}

/// A good line in one of the formats, and the patterns it must give.
fn good_line() -> impl Strategy<Value = (String, Vec<String>)> {
    prop_oneof![
        name().prop_map(|n| (n.clone(), vec![n])),
        name().prop_map(|n| (format!("*.{n}"), vec![format!("*.{n}")])),
        name().prop_map(|n| (format!(".{}", n.to_uppercase()), vec![format!(".{n}")])),
        (
            prop::sample::select(SINKHOLES.to_vec()),
            prop::collection::vec(name(), 1..3)
        )
            .prop_map(|(ip, ns)| (format!("{ip} {}", ns.join(" ")), ns)),
        name().prop_map(|n| (format!("||{n}^"), vec![format!(".{n}")])),
        Just(("# just a comment".to_owned(), vec![])),
        Just(("".to_owned(), vec![])),
    ]
}

/// A line that is not a name, a hosts-file line or `||name^`.
fn bad_line() -> impl Strategy<Value = String> {
    prop_oneof![
        name().prop_map(|n| format!("{n}##.ad")),
        name().prop_map(|n| format!("||{n}^$script")),
        name().prop_map(|n| format!("@@||{n}^")),
        name().prop_map(|n| format!("10.1.1.1 {n}")),
        name().prop_map(|n| format!("{n} {n}")),
        name().prop_map(|n| format!("{n}..x")),
        name().prop_map(|n| format!("{n}/path")),
        name().prop_map(|n| format!("a*{n}")),
    ]
}

proptest! {
    #[test]
    fn good_lines_give_their_patterns_and_bad_lines_their_numbers(
        lines in prop::collection::vec(
            prop_oneof![4 => good_line().prop_map(Ok), 1 => bad_line().prop_map(Err)], 0..60),
        trailing_comment in any::<bool>(),
    ) {
        let mut text = String::new();
        let (mut want, mut bad) = (Vec::new(), Vec::new());
        for (i, line) in lines.iter().enumerate() {
            match line {
                Ok((l, ps)) => {
                    text.push_str(l);
                    if trailing_comment && !l.is_empty() {
                        text.push_str(" # note");
                    }
                    want.extend(ps.iter().cloned());
                }
                Err(l) => {
                    text.push_str(l);
                    bad.push(u32::try_from(i + 1).unwrap());
                }
            }
            text.push('\n');
        }
        let parsed = parse_host_list(&text);
        let got: Vec<String> = parsed.entries.patterns().map(|p| p.to_string()).collect();
        prop_assert_eq!(got, want);
        let lines: Vec<u32> = parsed.issues.iter().map(|i| i.line).collect();
        prop_assert_eq!(lines, bad);
    }

    #[test]
    fn any_text_parses_without_panic_and_issues_are_in_order(text in "\\PC{0,300}") {
        for parsed in [parse_host_list(&text).issues, parse_net_list(&text).issues] {
            let lines: Vec<u32> = parsed.iter().map(|i| i.line).collect();
            prop_assert!(lines.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(lines.iter().all(|&l| l as usize <= text.lines().count()));
        }
    }

    #[test]
    fn net_list_round_trips(nets in prop::collection::vec((any::<u32>(), 0u8..=32), 0..50)) {
        let nets: Vec<IpNet> = nets.into_iter()
            .map(|(a, l)| IpNet::new(std::net::Ipv4Addr::from(a).into(), l).unwrap().trunc())
            .collect();
        let text: String = nets.iter().map(|n| format!("{n}\n")).collect();
        let parsed = parse_net_list(&text);
        prop_assert!(parsed.is_clean());
        prop_assert_eq!(parsed.entries, nets);
    }

    #[test]
    fn name_list_keeps_every_pattern(ps in prop::collection::vec(good_line(), 0..30)) {
        let mut list = NameList::default();
        let mut want = Vec::new();
        for p in ps.iter().flat_map(|(_, ps)| ps) {
            let p = HostPattern::parse(p).unwrap();
            list.push(&p);
            want.push(p);
        }
        prop_assert_eq!(list.len(), want.len());
        prop_assert_eq!(list.patterns().collect::<Vec<_>>(), want);
    }
}
