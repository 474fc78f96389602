//! Operator-level allow-lists for what a tenant's KinesisIngester may make the operator call with its own identity: role ARNs to assume, accounts of stream ARNs, and custom endpoints. Pure: checked before any AWS call.

use kinesis_ingester_api::StreamSpec;

/// One allow-list: glob patterns (`*` matches any run of characters; a lone `*` allows
/// everything). Empty allows nothing, which is the default for every list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// From flag values; blank entries are dropped.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Self {
        Self(
            items
                .into_iter()
                .map(Into::into)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    /// Allows anything (the "off" switch: `*`).
    pub fn any() -> Self {
        Self(vec!["*".to_owned()])
    }

    /// Whether `value` matches one of the patterns.
    pub fn allows(&self, value: &str) -> bool {
        self.0.iter().any(|p| glob(p, value))
    }

    fn describe(&self) -> String {
        if self.0.is_empty() {
            "empty".to_owned()
        } else {
            format!("[{}]", self.0.join(", "))
        }
    }
}

/// `*` matches any run of characters (including none); everything else literally.
fn glob(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return value.is_empty();
    };
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The three lists, from the operator's flags (`--allowed-role-arns`, `--allowed-account-ids`,
/// `--allowed-endpoints`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowLists {
    /// Role ARNs `spec.stream.roleArn` may name.
    pub role_arns: Patterns,
    /// Accounts `spec.stream.arn` may name.
    pub account_ids: Patterns,
    /// Endpoints `spec.stream.endpoint` may name. Unset always means the AWS endpoint.
    pub endpoints: Patterns,
}

/// A spec field the allow-lists refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field} {value:?} is not allowed by the operator's {flag} ({list}); ask the cluster admin to add it (chart value allowList.{value_key})"
)]
pub struct NotAllowed {
    /// The spec field, e.g. `spec.stream.roleArn`.
    pub field: &'static str,
    /// Its value (for an account: the account id).
    pub value: String,
    /// The operator flag that holds the list.
    pub flag: &'static str,
    /// The chart value that sets it.
    pub value_key: &'static str,
    /// The list, as configured.
    pub list: String,
}

impl AllowLists {
    /// Allows everything: what `*` in every list means.
    pub fn any() -> Self {
        Self {
            role_arns: Patterns::any(),
            account_ids: Patterns::any(),
            endpoints: Patterns::any(),
        }
    }

    /// Checks a stream spec; the first refused field.
    pub fn check(&self, stream: &StreamSpec) -> Result<(), NotAllowed> {
        if let Some(endpoint) = &stream.endpoint {
            let endpoint = endpoint.trim_end_matches('/');
            if !self.endpoints.allows(endpoint) {
                return Err(NotAllowed {
                    field: "spec.stream.endpoint",
                    value: endpoint.to_owned(),
                    flag: "--allowed-endpoints",
                    value_key: "endpoints",
                    list: self.endpoints.describe(),
                });
            }
        }
        if let Some(role) = &stream.role_arn
            && !self.role_arns.allows(role)
        {
            return Err(NotAllowed {
                field: "spec.stream.roleArn",
                value: role.clone(),
                flag: "--allowed-role-arns",
                value_key: "roleArns",
                list: self.role_arns.describe(),
            });
        }
        if let Some(arn) = &stream.arn {
            // arn:partition:kinesis:region:account:stream/name
            let account = arn.split(':').nth(4).unwrap_or_default();
            if !self.account_ids.allows(account) {
                return Err(NotAllowed {
                    field: "spec.stream.arn",
                    value: account.to_owned(),
                    flag: "--allowed-account-ids",
                    value_key: "accountIds",
                    list: self.account_ids.describe(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(f: impl FnOnce(&mut StreamSpec)) -> StreamSpec {
        let mut s = StreamSpec {
            name: Some("orders".into()),
            ..StreamSpec::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn globs_match_literally_except_the_star() {
        assert!(glob("*", ""));
        assert!(glob("*", "anything"));
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
        assert!(glob(
            "arn:aws:iam::123:role/team-*",
            "arn:aws:iam::123:role/team-a"
        ));
        assert!(!glob(
            "arn:aws:iam::123:role/team-*",
            "arn:aws:iam::456:role/team-a"
        ));
        assert!(glob("http://127.0.0.1:*", "http://127.0.0.1:4568"));
        assert!(!glob("http://127.0.0.1:*", "http://127.0.0.10.evil:1"));
        assert!(glob(
            "https://*.amazonaws.com",
            "https://kinesis.us-east-1.amazonaws.com"
        ));
        assert!(!glob(
            "https://*.amazonaws.com",
            "https://kinesis.amazonaws.com.evil"
        ));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXcYb"));
    }

    #[test]
    fn the_default_allows_only_the_operators_own_account_and_aws_endpoints() {
        let lists = AllowLists::default();
        assert_eq!(lists.check(&stream(|_| {})), Ok(()));
        let e = lists
            .check(&stream(|s| {
                s.endpoint = Some("http://10.0.0.1:4568".into())
            }))
            .expect_err("a custom endpoint");
        assert_eq!(e.field, "spec.stream.endpoint");
        assert!(e.to_string().contains("--allowed-endpoints (empty)"), "{e}");
        let e = lists
            .check(&stream(|s| {
                s.role_arn = Some("arn:aws:iam::210987654321:role/reader".into());
            }))
            .expect_err("a role");
        assert_eq!(e.field, "spec.stream.roleArn");
        let e = lists
            .check(&stream(|s| {
                s.name = None;
                s.arn = Some("arn:aws:kinesis:us-east-1:210987654321:stream/orders".into());
            }))
            .expect_err("a stream ARN");
        assert_eq!(
            (e.field, e.value.as_str()),
            ("spec.stream.arn", "210987654321")
        );
    }

    #[test]
    fn listed_values_pass_and_the_message_names_the_list() {
        let lists = AllowLists {
            role_arns: Patterns::new(["arn:aws:iam::210987654321:role/kinesis-*"]),
            account_ids: Patterns::new(["210987654321", " "]),
            endpoints: Patterns::new(["http://127.0.0.1:*"]),
        };
        let ok = stream(|s| {
            s.name = None;
            s.arn = Some("arn:aws:kinesis:us-east-1:210987654321:stream/orders".into());
            s.role_arn = Some("arn:aws:iam::210987654321:role/kinesis-reader".into());
            s.endpoint = Some("http://127.0.0.1:4568/".into());
        });
        assert_eq!(lists.check(&ok), Ok(()));
        let e = lists
            .check(&stream(|s| {
                s.role_arn = Some("arn:aws:iam::210987654321:role/admin".into());
            }))
            .expect_err("an unlisted role");
        assert!(
            e.to_string()
                .contains("--allowed-role-arns ([arn:aws:iam::210987654321:role/kinesis-*])"),
            "{e}"
        );
        assert_eq!(AllowLists::any().check(&ok), Ok(()));
    }
}
