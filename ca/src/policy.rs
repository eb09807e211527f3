//! Fabric-style policies: who must sign for something to be accepted.
//!
//! Two kinds exist, as in Fabric. A *signature policy* is a tree of `AND`, `OR` and `OutOf` over
//! principals such as `'Org1MSP.peer'`, evaluated against the identities that signed. An
//! *implicit-meta policy* such as `MAJORITY Endorsement` names a sub-policy that every organisation
//! of the channel defines and says how many organisations must be satisfied; that is how channel
//! policies keep following the membership without being rewritten whenever an organisation joins.
//!
//! # Grammar
//!
//! ```text
//! policy     = implicit | signature
//! implicit   = ("ANY" | "ALL" | "MAJORITY") name        ; keyword in upper case, as Fabric writes it
//! signature  = principal
//!            | ("AND" | "OR") "(" signature ("," signature)* ")"
//!            | "OutOf" "(" number ("," signature)* ")"  ; operators are case-insensitive
//! principal  = "'" msp_id "." role "'" | '"' msp_id "." role '"'
//! msp_id     = [A-Za-z0-9._-]+                          ; the role is the part after the last dot
//! role       = "member" | "admin" | "client" | "peer" | "orderer" | "auditor"
//! name       = [A-Za-z0-9_-]+
//! ```
//!
//! Whitespace may appear between any two tokens. A bare principal is accepted as a whole policy
//! (Fabric would demand `OR('A.peer')`) so that the `Display` of every [`SignaturePolicy`],
//! including a lone [`SignaturePolicy::SignedBy`], parses back to the same value.
//!
//! Policy text comes from channel configuration and from clients, so the parser treats it as
//! hostile: the text is at most [`MAX_POLICY_LEN`] bytes, operators nest at most [`MAX_DEPTH`]
//! deep and a policy names at most [`MAX_PRINCIPALS`] principals. Every error names the offending
//! value and its byte offset.
//!
//! Evaluation is a pure function of the policy and the signer list (no clock, no randomness, no
//! hash-map order), so every peer reaches the same verdict on the same transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest policy text accepted, in bytes.
pub const MAX_POLICY_LEN: usize = 4096;

/// How deeply `AND`/`OR`/`OutOf` operators may nest; a lone operator has depth 1.
pub const MAX_DEPTH: usize = 16;

/// The most principals one policy may name, counting repeats.
pub const MAX_PRINCIPALS: usize = 64;

/// The most distinct signers an evaluation considers; the rest are ignored.
///
/// Signers are tracked in a `u64` bitmask during the search. No real endorsement policy needs more
/// than a handful of signatures, so a transaction carrying more than this many distinct signers is
/// judged on its first ones rather than making every peer pay for the extra ones.
pub const MAX_SIGNERS: usize = 64;

/// The most steps the assignment search may take before it gives up and answers `false`.
///
/// Finding distinct signers for the principals is a matching problem that a hostile policy can make
/// exponential. Capping the work bounds the time a peer spends on one policy, and because the cap
/// counts steps rather than time, every peer gives up at the same point and agrees on the verdict.
pub const MAX_SEARCH_STEPS: u32 = 100_000;

/// What the parser could not accept; every variant says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is longer than [`MAX_POLICY_LEN`].
    #[error("policy text is {len} bytes, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// The text stopped where more was needed.
    #[error("unexpected end of policy text at byte {offset}, expected {expected}")]
    UnexpectedEnd {
        expected: &'static str,
        offset: usize,
    },
    /// A token that is valid somewhere, but not here.
    #[error("unexpected {found} at byte {offset}, expected {expected}")]
    Unexpected {
        found: String,
        expected: &'static str,
        offset: usize,
    },
    /// A character that starts no token of the grammar.
    #[error("unexpected character {found:?} at byte {offset}")]
    UnexpectedChar { found: char, offset: usize },
    /// A quoted principal whose closing quote is missing.
    #[error("unterminated principal: the quote at byte {offset} is never closed")]
    UnterminatedPrincipal { offset: usize },
    /// A word where an operator was expected that is none of `AND`, `OR`, `OutOf`.
    #[error("unknown operator {name:?} at byte {offset}, expected AND, OR or OutOf")]
    UnknownOperator { name: String, offset: usize },
    /// A character inside a principal that MSP ids and roles never contain.
    #[error(
        "character {found:?} at byte {offset} is not allowed in a principal, which takes letters, digits, '.', '-' and '_'"
    )]
    InvalidPrincipalChar { found: char, offset: usize },
    /// A principal without the `.role` suffix.
    #[error("principal {principal:?} at byte {offset} has no role, expected MSPID.role")]
    MissingRole { principal: String, offset: usize },
    /// A principal whose MSP id, the part before the last dot, is empty.
    #[error("principal {principal:?} at byte {offset} has an empty MSP id")]
    EmptyMspId { principal: String, offset: usize },
    /// A principal whose role is not one of the known roles.
    #[error(
        "unknown role {role:?} at byte {offset}, expected member, admin, client, peer, orderer or auditor"
    )]
    UnknownRoleAt { role: String, offset: usize },
    /// [`MspRole::from_str`] was given something that is not a role.
    #[error("unknown MSP role {role:?}, expected member, admin, client, peer, orderer or auditor")]
    UnknownRole { role: String },
    /// The `n` of `OutOf(n, ...)` is not a number that fits.
    #[error("OutOf threshold {text:?} at byte {offset} is not a whole number within range")]
    InvalidThreshold { text: String, offset: usize },
    /// `OutOf(0, ...)`, which any empty signature set would satisfy.
    #[error("OutOf threshold at byte {offset} is 0, it must be at least 1")]
    ZeroThreshold { offset: usize },
    /// `OutOf(n, ...)` with fewer than `n` sub-policies, which nothing could satisfy.
    #[error("OutOf threshold {n} at byte {offset} exceeds its {count} sub-policies")]
    ThresholdTooHigh {
        n: usize,
        count: usize,
        offset: usize,
    },
    /// `AND()` or `OR()` with nothing inside.
    #[error("{operator} at byte {offset} has no sub-policies, it needs at least one")]
    EmptyOperator {
        operator: &'static str,
        offset: usize,
    },
    /// Operators nested deeper than [`MAX_DEPTH`].
    #[error("operator at byte {offset} nests deeper than {max} levels")]
    TooDeep { max: usize, offset: usize },
    /// More principals than [`MAX_PRINCIPALS`].
    #[error("principal at byte {offset} is beyond the limit of {max} principals in a policy")]
    TooManyPrincipals { max: usize, offset: usize },
    /// Something after a complete policy.
    #[error("unexpected trailing {found} at byte {offset} after a complete policy")]
    TrailingInput { found: String, offset: usize },
    /// An implicit-meta policy where only a signature policy makes sense.
    #[error(
        "implicit-meta policy {policy:?} at byte {offset} where a signature policy is required"
    )]
    NotSignaturePolicy { policy: String, offset: usize },
}

/// The role a principal demands of its signer, as in Fabric's `MSPRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MspRole {
    /// Any valid identity of the MSP, whatever its other roles.
    Member,
    /// An administrator of the MSP.
    Admin,
    /// A client identity (applications, users).
    Client,
    /// A peer node.
    Peer,
    /// An orderer node.
    Orderer,
    /// An auditor.
    Auditor,
}

impl MspRole {
    /// Every role, in declaration order.
    pub const ALL: [MspRole; 6] = [
        MspRole::Member,
        MspRole::Admin,
        MspRole::Client,
        MspRole::Peer,
        MspRole::Orderer,
        MspRole::Auditor,
    ];

    /// The role's name as it appears in policy text.
    pub fn as_str(self) -> &'static str {
        match self {
            MspRole::Member => "member",
            MspRole::Admin => "admin",
            MspRole::Client => "client",
            MspRole::Peer => "peer",
            MspRole::Orderer => "orderer",
            MspRole::Auditor => "auditor",
        }
    }
}

impl fmt::Display for MspRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MspRole {
    type Err = PolicyError;

    /// Parses a lower-case role name; Fabric's principals are case-sensitive, and so are ours.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MspRole::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownRole { role: s.to_owned() })
    }
}

/// One role in one MSP: the unit a signature policy asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The MSP (organisation) the signer must belong to.
    pub msp_id: String,
    /// The role the signer must hold in that MSP.
    pub role: MspRole,
}

impl Principal {
    /// A principal for `role` in `msp_id`.
    pub fn new(msp_id: impl Into<String>, role: MspRole) -> Self {
        Principal {
            msp_id: msp_id.into(),
            role,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}.{}'", self.msp_id, self.role)
    }
}

/// A tree of principals combined by thresholds, as Fabric's `SignaturePolicy`.
///
/// `AND` and `OR` are not separate variants: `AND` is `NOutOf` with `n` equal to the number of
/// rules and `OR` is `n == 1`, exactly as Fabric compiles them, so there is one evaluation path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignaturePolicy {
    /// Satisfied by one signer that matches the principal.
    SignedBy(Principal),
    /// Satisfied when at least `n` of `rules` are satisfied by pairwise distinct signers.
    NOutOf {
        n: usize,
        rules: Vec<SignaturePolicy>,
    },
}

impl SignaturePolicy {
    /// A policy satisfied by one signer matching `principal`.
    pub fn signed_by(principal: Principal) -> Self {
        SignaturePolicy::SignedBy(principal)
    }

    /// A policy satisfied when every rule is.
    pub fn and(rules: Vec<SignaturePolicy>) -> Self {
        SignaturePolicy::NOutOf {
            n: rules.len(),
            rules,
        }
    }

    /// A policy satisfied when any rule is.
    pub fn or(rules: Vec<SignaturePolicy>) -> Self {
        SignaturePolicy::NOutOf { n: 1, rules }
    }

    /// A policy satisfied when at least `n` of the rules are.
    pub fn out_of(n: usize, rules: Vec<SignaturePolicy>) -> Self {
        SignaturePolicy::NOutOf { n, rules }
    }

    /// True when the signers satisfy the policy, each distinct signer used for at most one principal.
    ///
    /// Signers are deduplicated by [`PolicySigner::signer_key`], keeping the first occurrence, and
    /// only the first [`MAX_SIGNERS`] distinct ones are considered. A tree beyond the parser's
    /// limits ([`MAX_DEPTH`], [`MAX_PRINCIPALS`]) is never satisfied: text cannot produce one, and
    /// refusing it keeps evaluation bounded. A search that runs out of [`MAX_SEARCH_STEPS`] answers
    /// `false`.
    pub fn evaluate<S: PolicySigner>(&self, signers: &[S]) -> bool {
        self.evaluate_distinct(&distinct_signers(signers))
    }

    /// MSP ids named by the policy, sorted and deduplicated (for planning endorsements).
    pub fn msp_ids(&self) -> Vec<&str> {
        // An explicit stack rather than recursion, so that a tree built in code, which has not
        // passed the parser's depth limit, cannot overflow the thread's stack.
        let mut ids = BTreeSet::new();
        let mut pending = vec![self];
        while let Some(policy) = pending.pop() {
            match policy {
                SignaturePolicy::SignedBy(principal) => {
                    ids.insert(principal.msp_id.as_str());
                }
                SignaturePolicy::NOutOf { rules, .. } => pending.extend(rules),
            }
        }
        ids.into_iter().collect()
    }

    /// The verdict for signers that are already distinct and at most [`MAX_SIGNERS`].
    fn evaluate_distinct<S: PolicySigner>(&self, signers: &[&S]) -> bool {
        let mut compiler = Compiler {
            signers,
            nodes: Vec::new(),
            principals: 0,
        };
        let root = match compiler.compile(self, 0) {
            Some(Compiled::Node(root)) => root,
            Some(Compiled::Always) => return true,
            Some(Compiled::Never) | None => return false,
        };
        let nodes = compiler.nodes;

        // A cheap necessary condition first: if the tree needs more distinct signers than match
        // any of its principals, no assignment exists and the exponential search is skipped.
        let (needed, available) = bounds(&nodes, root);
        if needed > available.count_ones() as usize {
            return false;
        }

        let mut search = Search {
            nodes: &nodes,
            steps: 0,
        };
        let mut goals = vec![Frame::Node(root)];
        search.solve(&mut goals, 0).unwrap_or(false)
    }
}

impl fmt::Display for SignaturePolicy {
    /// Writes the canonical text: `AND(...)` when every rule is needed, `OR(...)` when one is,
    /// `OutOf(n, ...)` otherwise, principals single-quoted and rules separated by `", "`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignaturePolicy::SignedBy(principal) => write!(f, "{principal}"),
            SignaturePolicy::NOutOf { n, rules } => {
                if *n == rules.len() {
                    f.write_str("AND(")?;
                } else if *n == 1 {
                    f.write_str("OR(")?;
                } else {
                    write!(f, "OutOf({n}, ")?;
                }
                for (index, rule) in rules.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{rule}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl FromStr for SignaturePolicy {
    type Err = PolicyError;

    /// Parses signature-policy text; implicit-meta text is refused because it only means something
    /// against a channel's organisations.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<Policy>()? {
            Policy::Signature(policy) => Ok(policy),
            Policy::ImplicitMeta(meta) => Err(PolicyError::NotSignaturePolicy {
                policy: meta.to_string(),
                offset: s.len() - s.trim_start().len(),
            }),
        }
    }
}

impl Serialize for SignaturePolicy {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SignaturePolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How many organisations an implicit-meta policy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImplicitMetaRule {
    /// At least one organisation.
    Any,
    /// Every organisation, and there must be at least one.
    All,
    /// More than half of the organisations.
    Majority,
}

impl ImplicitMetaRule {
    /// The rule's keyword as Fabric writes it, in upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            ImplicitMetaRule::Any => "ANY",
            ImplicitMetaRule::All => "ALL",
            ImplicitMetaRule::Majority => "MAJORITY",
        }
    }

    /// The rule for an exact upper-case keyword; Fabric's `ImplicitMetaFromString` is
    /// case-sensitive, and a lower-case `any` is therefore reported as an unknown operator.
    fn from_keyword(word: &str) -> Option<Self> {
        match word {
            "ANY" => Some(ImplicitMetaRule::Any),
            "ALL" => Some(ImplicitMetaRule::All),
            "MAJORITY" => Some(ImplicitMetaRule::Majority),
            _ => None,
        }
    }

    /// Whether `satisfied` organisations out of `total` are enough.
    fn is_met(self, satisfied: usize, total: usize) -> bool {
        match self {
            ImplicitMetaRule::Any => satisfied >= 1,
            ImplicitMetaRule::All => total > 0 && satisfied == total,
            ImplicitMetaRule::Majority => satisfied > total / 2,
        }
    }
}

impl fmt::Display for ImplicitMetaRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy that delegates to the same-named sub-policy of every organisation, as `MAJORITY Endorsement`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImplicitMetaPolicy {
    /// How many organisations must be satisfied.
    pub rule: ImplicitMetaRule,
    /// The name of the organisations' sub-policy, such as `Writers`.
    pub sub_policy: String,
}

impl fmt::Display for ImplicitMetaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.rule, self.sub_policy)
    }
}

/// Any policy a channel or chaincode may carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Policy {
    /// A tree of principals.
    Signature(SignaturePolicy),
    /// A rule over the organisations' own sub-policies.
    ImplicitMeta(ImplicitMetaPolicy),
}

impl Policy {
    /// Evaluates a signature policy directly, and an implicit-meta policy by evaluating the named
    /// sub-policy of every organisation (each with the full signer set) and counting the satisfied
    /// ones: ANY >= 1, ALL == every org (and at least one org), MAJORITY > half the orgs.
    /// An org without that sub-policy counts as not satisfied.
    ///
    /// Organisation ids are deduplicated first, so a resolver listing one twice cannot count it
    /// twice towards a majority.
    pub fn evaluate<S: PolicySigner, R: PolicyResolver + ?Sized>(
        &self,
        signers: &[S],
        resolver: &R,
    ) -> bool {
        let signers = distinct_signers(signers);
        match self {
            Policy::Signature(policy) => policy.evaluate_distinct(&signers),
            Policy::ImplicitMeta(meta) => {
                let orgs: BTreeSet<&str> = resolver.org_ids().into_iter().collect();
                let satisfied = orgs
                    .iter()
                    .filter(|org| {
                        resolver
                            .org_policy(org, &meta.sub_policy)
                            .is_some_and(|policy| policy.evaluate_distinct(&signers))
                    })
                    .count();
                meta.rule.is_met(satisfied, orgs.len())
            }
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Signature(policy) => write!(f, "{policy}"),
            Policy::ImplicitMeta(meta) => write!(f, "{meta}"),
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser::parse(s)
    }
}

impl Serialize for Policy {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the evaluator needs to know of one signer (an already-verified identity).
pub trait PolicySigner {
    /// The signer's MSP id.
    fn msp_id(&self) -> &str;
    /// Whether this signer holds the role (MspRole::Member: any valid member of its MSP).
    fn has_role(&self, role: MspRole) -> bool;
    /// A stable key for the signer (e.g. a certificate hash); two signers with the same key are the same signer and count once.
    fn signer_key(&self) -> &[u8];
}

/// The channel's organisations and their named policies, for implicit-meta evaluation.
pub trait PolicyResolver {
    /// The MSP ids of the channel's organisations, in a deterministic order.
    fn org_ids(&self) -> Vec<&str>;
    /// The organisation's named sub-policy ("Readers", "Writers", "Admins", "Endorsement"), if defined.
    fn org_policy(&self, msp_id: &str, name: &str) -> Option<&SignaturePolicy>;
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// A token of policy text; borrowed slices keep the lexer free of allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind<'a> {
    /// A run of letters, digits, `_` and `-`: an operator, a rule keyword, a number or a name.
    Word(&'a str),
    /// The text between matching quotes, without them.
    Quoted(&'a str),
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: TokenKind<'a>,
    /// Byte offset of the token's first character.
    offset: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_principal_char(c: char) -> bool {
    is_word_char(c) || c == '.'
}

/// How a token is named in error messages; free text is debug-escaped so that control characters
/// from hostile input cannot garble a log line.
fn describe(kind: TokenKind<'_>) -> String {
    match kind {
        TokenKind::Word(word) => format!("word {word:?}"),
        TokenKind::Quoted(text) => format!("principal {text:?}"),
        TokenKind::LParen => "'('".to_owned(),
        TokenKind::RParen => "')'".to_owned(),
        TokenKind::Comma => "','".to_owned(),
        TokenKind::End => "end of input".to_owned(),
    }
}

/// The error for finding `token` where `expected` was needed.
fn unexpected(token: Token<'_>, expected: &'static str) -> PolicyError {
    match token.kind {
        TokenKind::End => PolicyError::UnexpectedEnd {
            expected,
            offset: token.offset,
        },
        kind => PolicyError::Unexpected {
            found: describe(kind),
            expected,
            offset: token.offset,
        },
    }
}

struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next unread character; always on a character boundary.
    pos: usize,
    peeked: Option<Token<'a>>,
}

impl<'a> Lexer<'a> {
    fn next_token(&mut self) -> Result<Token<'a>, PolicyError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lex(),
        }
    }

    fn peek(&mut self) -> Result<Token<'a>, PolicyError> {
        if let Some(token) = self.peeked {
            return Ok(token);
        }
        let token = self.lex()?;
        self.peeked = Some(token);
        Ok(token)
    }

    fn lex(&mut self) -> Result<Token<'a>, PolicyError> {
        let rest = self.src.get(self.pos..).unwrap_or("");
        let rest_trimmed = rest.trim_start();
        self.pos += rest.len() - rest_trimmed.len();
        let offset = self.pos;
        let Some(first) = rest_trimmed.chars().next() else {
            return Ok(Token {
                kind: TokenKind::End,
                offset,
            });
        };
        let kind = match first {
            '(' => {
                self.pos += 1;
                TokenKind::LParen
            }
            ')' => {
                self.pos += 1;
                TokenKind::RParen
            }
            ',' => {
                self.pos += 1;
                TokenKind::Comma
            }
            '\'' | '"' => {
                // Both quote characters are one byte, so the body starts one byte in.
                let body = rest_trimmed.get(1..).unwrap_or("");
                let Some(len) = body.find(first) else {
                    return Err(PolicyError::UnterminatedPrincipal { offset });
                };
                self.pos += len + 2;
                TokenKind::Quoted(body.get(..len).unwrap_or(""))
            }
            c if is_word_char(c) => {
                let len = rest_trimmed
                    .find(|c: char| !is_word_char(c))
                    .unwrap_or(rest_trimmed.len());
                self.pos += len;
                TokenKind::Word(rest_trimmed.get(..len).unwrap_or(""))
            }
            other => {
                return Err(PolicyError::UnexpectedChar {
                    found: other,
                    offset,
                });
            }
        };
        Ok(Token { kind, offset })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    And,
    Or,
    OutOf,
}

impl Operator {
    /// Fabric's parser accepts `AND`/`and`, `OR`/`or` and `OutOf`/`outof`; any ASCII casing is
    /// accepted here, which is a superset and never ambiguous.
    fn from_keyword(word: &str) -> Option<Self> {
        if word.eq_ignore_ascii_case("and") {
            Some(Operator::And)
        } else if word.eq_ignore_ascii_case("or") {
            Some(Operator::Or)
        } else if word.eq_ignore_ascii_case("outof") {
            Some(Operator::OutOf)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Operator::And => "AND",
            Operator::Or => "OR",
            Operator::OutOf => "OutOf",
        }
    }
}

/// A recursive-descent parser; recursion is bounded by [`MAX_DEPTH`], checked before descending.
struct Parser<'a> {
    lexer: Lexer<'a>,
    /// Principals seen so far, against [`MAX_PRINCIPALS`].
    principals: usize,
}

impl<'a> Parser<'a> {
    fn parse(text: &'a str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLong {
                len: text.len(),
                max: MAX_POLICY_LEN,
            });
        }
        let mut parser = Parser {
            lexer: Lexer {
                src: text,
                pos: 0,
                peeked: None,
            },
            principals: 0,
        };
        let first = parser.lexer.peek()?;
        let rule = match first.kind {
            TokenKind::Word(word) => ImplicitMetaRule::from_keyword(word),
            _ => None,
        };
        let policy = match rule {
            Some(rule) => {
                parser.lexer.next_token()?;
                let name = parser.lexer.next_token()?;
                match name.kind {
                    TokenKind::Word(sub_policy) => Policy::ImplicitMeta(ImplicitMetaPolicy {
                        rule,
                        sub_policy: sub_policy.to_owned(),
                    }),
                    _ => return Err(unexpected(name, "a sub-policy name")),
                }
            }
            None => Policy::Signature(parser.parse_signature(0)?),
        };
        let end = parser.lexer.next_token()?;
        if end.kind != TokenKind::End {
            return Err(PolicyError::TrailingInput {
                found: describe(end.kind),
                offset: end.offset,
            });
        }
        Ok(policy)
    }

    /// Parses one signature policy nested inside `depth` operators.
    fn parse_signature(&mut self, depth: usize) -> Result<SignaturePolicy, PolicyError> {
        let token = self.lexer.next_token()?;
        match token.kind {
            TokenKind::Quoted(text) => {
                self.principals += 1;
                if self.principals > MAX_PRINCIPALS {
                    return Err(PolicyError::TooManyPrincipals {
                        max: MAX_PRINCIPALS,
                        offset: token.offset,
                    });
                }
                parse_principal(text, token.offset + 1).map(SignaturePolicy::SignedBy)
            }
            TokenKind::Word(word) => match Operator::from_keyword(word) {
                Some(operator) => self.parse_operator(operator, token.offset, depth),
                None => Err(PolicyError::UnknownOperator {
                    name: word.to_owned(),
                    offset: token.offset,
                }),
            },
            _ => Err(unexpected(token, "a principal, AND, OR or OutOf")),
        }
    }

    /// Parses the parenthesised part of an operator whose keyword was at `offset`.
    fn parse_operator(
        &mut self,
        operator: Operator,
        offset: usize,
        depth: usize,
    ) -> Result<SignaturePolicy, PolicyError> {
        if depth >= MAX_DEPTH {
            return Err(PolicyError::TooDeep {
                max: MAX_DEPTH,
                offset,
            });
        }
        let open = self.lexer.next_token()?;
        if open.kind != TokenKind::LParen {
            return Err(unexpected(open, "'(' after the operator"));
        }
        let mut rules = Vec::new();
        if operator == Operator::OutOf {
            let (n, n_offset) = self.parse_threshold()?;
            // After the threshold comes either the closing parenthesis or a comma and the rules.
            let next = self.lexer.next_token()?;
            match next.kind {
                TokenKind::RParen => {}
                TokenKind::Comma => self.parse_rules(&mut rules, depth)?,
                _ => return Err(unexpected(next, "',' or ')' after the threshold")),
            }
            if n > rules.len() {
                return Err(PolicyError::ThresholdTooHigh {
                    n,
                    count: rules.len(),
                    offset: n_offset,
                });
            }
            return Ok(SignaturePolicy::NOutOf { n, rules });
        }
        if self.lexer.peek()?.kind == TokenKind::RParen {
            return Err(PolicyError::EmptyOperator {
                operator: operator.name(),
                offset,
            });
        }
        self.parse_rules(&mut rules, depth)?;
        let n = if operator == Operator::And {
            rules.len()
        } else {
            1
        };
        Ok(SignaturePolicy::NOutOf { n, rules })
    }

    /// Parses `rule ("," rule)* ")"` for an operator at `depth`.
    fn parse_rules(
        &mut self,
        rules: &mut Vec<SignaturePolicy>,
        depth: usize,
    ) -> Result<(), PolicyError> {
        loop {
            rules.push(self.parse_signature(depth + 1)?);
            let next = self.lexer.next_token()?;
            match next.kind {
                TokenKind::Comma => {}
                TokenKind::RParen => return Ok(()),
                _ => return Err(unexpected(next, "',' or ')'")),
            }
        }
    }

    /// Parses the `n` of `OutOf(n, ...)` and returns it with its offset.
    fn parse_threshold(&mut self) -> Result<(usize, usize), PolicyError> {
        let token = self.lexer.next_token()?;
        let TokenKind::Word(text) = token.kind else {
            return Err(unexpected(token, "a threshold number"));
        };
        // `usize::from_str` alone would accept a leading '+', which the grammar does not have.
        let n = if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse::<usize>().ok()
        } else {
            None
        };
        match n {
            None => Err(PolicyError::InvalidThreshold {
                text: text.to_owned(),
                offset: token.offset,
            }),
            Some(0) => Err(PolicyError::ZeroThreshold {
                offset: token.offset,
            }),
            Some(n) => Ok((n, token.offset)),
        }
    }
}

/// Parses the inside of a quoted principal, `MSPID.role`, whose first byte is at `offset`.
fn parse_principal(text: &str, offset: usize) -> Result<Principal, PolicyError> {
    if let Some((index, found)) = text.char_indices().find(|&(_, c)| !is_principal_char(c)) {
        return Err(PolicyError::InvalidPrincipalChar {
            found,
            offset: offset + index,
        });
    }
    // MSP ids may themselves contain dots, so the role is whatever follows the last one.
    let Some((msp_id, role)) = text.rsplit_once('.') else {
        return Err(PolicyError::MissingRole {
            principal: text.to_owned(),
            offset,
        });
    };
    if msp_id.is_empty() {
        return Err(PolicyError::EmptyMspId {
            principal: text.to_owned(),
            offset,
        });
    }
    let role = role
        .parse::<MspRole>()
        .map_err(|_| PolicyError::UnknownRoleAt {
            role: role.to_owned(),
            offset: offset + msp_id.len() + 1,
        })?;
    Ok(Principal::new(msp_id, role))
}

// ---------------------------------------------------------------------------------------------
// Evaluation
//
// A policy is satisfied iff some assignment of *distinct* signers to principals makes the tree
// true. Greedy evaluation gets this wrong: for `AND('A.member', 'A.peer')` with signers
// [peer1 (member and peer), client1 (member)], handing peer1 to 'A.member' first leaves nobody for
// 'A.peer', although client1 → member, peer1 → peer works. The evaluator therefore searches:
//
// 1. Signers are deduplicated by key (first occurrence wins) and capped at `MAX_SIGNERS`, so a set
//    of used signers is a `u64` bitmask.
// 2. The tree is compiled into an arena: each principal becomes a leaf holding the bitmask of the
//    signers that match it; children that no signer could ever satisfy are dropped, children that
//    are satisfied without signers (`NOutOf` with `n == 0`, only buildable in code) lower the
//    threshold, and one-child nodes collapse into their child. After this every operator node has
//    at least two children, so a tree of at most 64 principals has at most 127 nodes.
// 3. A necessary condition is checked: the fewest distinct signers the tree could need must not
//    exceed the number of signers that match any of its leaves.
// 4. A depth-first backtracking search keeps a stack of pending goals and the bitmask of signers
//    used so far. A leaf goal tries each unused matching signer in index order; a "choose `need`
//    of these children" goal either takes its first child (pushing the child and the remainder
//    with `need - 1`) or skips it (when enough children remain). The whole pending stack is part
//    of the search, so a choice made deep in one branch is revisited when a later goal fails.
//    Every step counts against `MAX_SEARCH_STEPS`; running out answers `false`, the same on every
//    peer.
// ---------------------------------------------------------------------------------------------

/// Keeps the first occurrence of each signer key, up to [`MAX_SIGNERS`] signers.
fn distinct_signers<S: PolicySigner>(signers: &[S]) -> Vec<&S> {
    let mut distinct: Vec<&S> = Vec::new();
    for signer in signers {
        if distinct.len() == MAX_SIGNERS {
            break;
        }
        // A linear scan over at most 64 kept signers; ordered, and cheaper than hashing here.
        if !distinct
            .iter()
            .any(|kept| kept.signer_key() == signer.signer_key())
        {
            distinct.push(signer);
        }
    }
    distinct
}

/// One node of a compiled policy.
enum Node {
    /// A principal, as the bitmask of the signers that match it; never zero.
    Leaf(u64),
    /// At least `need` of `children` (indices into the arena), with `1 <= need <= children.len()`
    /// and at least two children.
    Choose { need: usize, children: Vec<usize> },
}

/// The outcome of compiling a subtree.
enum Compiled {
    /// Satisfied without any signer.
    Always,
    /// Not satisfiable by these signers whatever the assignment.
    Never,
    /// Depends on the assignment; the index of its node in the arena.
    Node(usize),
}

struct Compiler<'a, S> {
    signers: &'a [&'a S],
    nodes: Vec<Node>,
    principals: usize,
}

impl<S: PolicySigner> Compiler<'_, S> {
    /// Compiles `policy`, nested inside `depth` operators; `None` when the tree is beyond the
    /// parser's limits.
    fn compile(&mut self, policy: &SignaturePolicy, depth: usize) -> Option<Compiled> {
        match policy {
            SignaturePolicy::SignedBy(principal) => {
                self.principals += 1;
                if self.principals > MAX_PRINCIPALS {
                    return None;
                }
                let mut candidates = 0u64;
                // `zip` stops at 64 bits, so the shift can never overflow.
                for (bit, signer) in (0..u64::BITS).zip(self.signers) {
                    if signer.msp_id() == principal.msp_id && signer.has_role(principal.role) {
                        candidates |= 1 << bit;
                    }
                }
                if candidates == 0 {
                    return Some(Compiled::Never);
                }
                self.nodes.push(Node::Leaf(candidates));
                Some(Compiled::Node(self.nodes.len() - 1))
            }
            SignaturePolicy::NOutOf { n, rules } => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let mut need = *n;
                let mut children = Vec::new();
                for rule in rules {
                    match self.compile(rule, depth + 1)? {
                        Compiled::Always => need = need.saturating_sub(1),
                        Compiled::Never => {}
                        Compiled::Node(child) => children.push(child),
                    }
                }
                if need == 0 {
                    return Some(Compiled::Always);
                }
                if children.len() < need {
                    return Some(Compiled::Never);
                }
                if let [only] = children.as_slice() {
                    return Some(Compiled::Node(*only));
                }
                self.nodes.push(Node::Choose { need, children });
                Some(Compiled::Node(self.nodes.len() - 1))
            }
        }
    }
}

/// The fewest distinct signers the subtree at `index` needs, and the signers any of its leaves
/// accept. Recursion follows the compiled tree, whose depth is at most [`MAX_DEPTH`].
fn bounds(nodes: &[Node], index: usize) -> (usize, u64) {
    match nodes.get(index) {
        None => (usize::MAX, 0),
        Some(Node::Leaf(candidates)) => (1, *candidates),
        Some(Node::Choose { need, children }) => {
            let mut union = 0;
            let mut minimums = Vec::with_capacity(children.len());
            for &child in children {
                let (minimum, accepted) = bounds(nodes, child);
                minimums.push(minimum);
                union |= accepted;
            }
            minimums.sort_unstable();
            let needed = minimums
                .iter()
                .take(*need)
                .fold(0usize, |sum, m| sum.saturating_add(*m));
            (needed, union)
        }
    }
}

/// A pending goal of the search.
#[derive(Clone, Copy)]
enum Frame<'n> {
    /// Satisfy the compiled node at this index.
    Node(usize),
    /// Satisfy `need` more of `children`, choosing in order.
    Choose { children: &'n [usize], need: usize },
}

/// The search ran out of [`MAX_SEARCH_STEPS`].
struct Exhausted;

struct Search<'n> {
    nodes: &'n [Node],
    steps: u32,
}

impl<'n> Search<'n> {
    /// Whether every goal on `goals` can be met with signers outside `used`. The stack is restored
    /// before returning `Ok`, so the caller can try its next alternative on the same stack.
    ///
    /// Recursion depth is bounded by the goals along one path: each of the at most 127 compiled
    /// nodes is expanded once and each child decision taken once, a few hundred frames at most.
    fn solve(&mut self, goals: &mut Vec<Frame<'n>>, used: u64) -> Result<bool, Exhausted> {
        self.steps += 1;
        if self.steps > MAX_SEARCH_STEPS {
            return Err(Exhausted);
        }
        let Some(goal) = goals.pop() else {
            return Ok(true);
        };
        let result = self.expand(goal, goals, used);
        goals.push(goal);
        result
    }

    /// Tries every way of meeting `goal`, continuing with the rest of `goals` after each.
    fn expand(
        &mut self,
        goal: Frame<'n>,
        goals: &mut Vec<Frame<'n>>,
        used: u64,
    ) -> Result<bool, Exhausted> {
        let nodes = self.nodes;
        match goal {
            Frame::Node(index) => match nodes.get(index) {
                None => Ok(false),
                Some(Node::Leaf(candidates)) => {
                    let mut free = candidates & !used;
                    while free != 0 {
                        // The lowest free signer first, so the order of the search is fixed.
                        let bit = free & free.wrapping_neg();
                        if self.solve(goals, used | bit)? {
                            return Ok(true);
                        }
                        free &= !bit;
                    }
                    Ok(false)
                }
                Some(Node::Choose { need, children }) => {
                    goals.push(Frame::Choose {
                        children,
                        need: *need,
                    });
                    let result = self.solve(goals, used);
                    goals.pop();
                    result
                }
            },
            Frame::Choose { children, need } => {
                if need == 0 {
                    return self.solve(goals, used);
                }
                let Some((&first, rest)) = children.split_first() else {
                    return Ok(false);
                };
                if children.len() < need {
                    return Ok(false);
                }
                // Take the first child: it is met next, then the remainder needs one fewer.
                goals.push(Frame::Choose {
                    children: rest,
                    need: need - 1,
                });
                goals.push(Frame::Node(first));
                let taken = self.solve(goals, used);
                goals.pop();
                goals.pop();
                if taken? {
                    return Ok(true);
                }
                // Skip the first child, when enough children remain to reach the threshold.
                if rest.len() < need {
                    return Ok(false);
                }
                goals.push(Frame::Choose {
                    children: rest,
                    need,
                });
                let skipped = self.solve(goals, used);
                goals.pop();
                skipped
            }
        }
    }
}

/// The named policies of a channel's organisations (`Readers`, `Writers`, `Admins`,
/// `Endorsement`), which implicit-meta policies such as `MAJORITY Endorsement` refer to.
#[derive(Debug, Clone, Default)]
pub struct OrgPolicies {
    orgs: Vec<String>,
    policies: BTreeMap<(String, String), SignaturePolicy>,
}

impl OrgPolicies {
    /// Fabric's defaults for each org: Readers = any member, Writers = admins and clients (so not
    /// auditors), Admins = admins, Endorsement = peers.
    pub fn defaults(orgs: &[&str]) -> Self {
        let mut p = OrgPolicies::default();
        for org in orgs {
            p.orgs.push(org.to_string());
            for (name, text) in [
                ("Readers", format!("OR('{org}.member')")),
                ("Writers", format!("OR('{org}.admin', '{org}.client')")),
                ("Admins", format!("OR('{org}.admin')")),
                ("Endorsement", format!("OR('{org}.peer')")),
            ] {
                // These texts are well-formed by construction; a failure would be a bug here.
                if let Ok(policy) = text.parse() {
                    p.policies
                        .insert((org.to_string(), name.to_string()), policy);
                }
            }
        }
        p
    }

    /// Sets (or replaces) one named policy of an org.
    pub fn set(&mut self, org: &str, name: &str, policy: SignaturePolicy) {
        if !self.orgs.iter().any(|o| o == org) {
            self.orgs.push(org.to_owned());
        }
        self.policies
            .insert((org.to_owned(), name.to_owned()), policy);
    }
}

impl PolicyResolver for OrgPolicies {
    fn org_ids(&self) -> Vec<&str> {
        self.orgs.iter().map(String::as_str).collect()
    }
    fn org_policy(&self, msp_id: &str, name: &str) -> Option<&SignaturePolicy> {
        self.policies.get(&(msp_id.to_owned(), name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer for tests, written as `key:MSP:role+role`; every signer is a member.
    struct TestSigner {
        key: Vec<u8>,
        msp_id: String,
        roles: Vec<MspRole>,
    }

    impl PolicySigner for TestSigner {
        fn msp_id(&self) -> &str {
            &self.msp_id
        }

        fn has_role(&self, role: MspRole) -> bool {
            role == MspRole::Member || self.roles.contains(&role)
        }

        fn signer_key(&self) -> &[u8] {
            &self.key
        }
    }

    fn signer(spec: &str) -> TestSigner {
        let mut parts = spec.splitn(3, ':');
        let key = parts.next().unwrap_or_default();
        let msp_id = parts.next().unwrap_or_default();
        let roles = parts
            .next()
            .unwrap_or_default()
            .split('+')
            .filter(|role| !role.is_empty())
            .map(|role| {
                role.parse()
                    .unwrap_or_else(|e| panic!("bad role in {spec}: {e}"))
            })
            .collect();
        TestSigner {
            key: key.as_bytes().to_vec(),
            msp_id: msp_id.to_owned(),
            roles,
        }
    }

    fn signers(specs: &[&str]) -> Vec<TestSigner> {
        specs.iter().map(|spec| signer(spec)).collect()
    }

    fn signature(text: &str) -> SignaturePolicy {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn policy(text: &str) -> Policy {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    /// `depth` nested `AND`s around one principal.
    fn nested(depth: usize) -> String {
        format!("{}'A.peer'{}", "AND(".repeat(depth), ")".repeat(depth))
    }

    /// A channel whose organisations define Writers (member), Admins (admin) and Endorsement
    /// (peer), except the `(org, name)` pairs listed in `missing`.
    struct TestResolver {
        orgs: Vec<(String, Vec<(String, SignaturePolicy)>)>,
    }

    impl TestResolver {
        fn new(ids: &[&str], missing: &[(&str, &str)]) -> Self {
            let orgs = ids
                .iter()
                .map(|id| {
                    let policies = [
                        ("Writers", "member"),
                        ("Admins", "admin"),
                        ("Endorsement", "peer"),
                    ]
                    .into_iter()
                    .filter(|(name, _)| !missing.contains(&(*id, *name)))
                    .map(|(name, role)| (name.to_owned(), signature(&format!("'{id}.{role}'"))))
                    .collect();
                    ((*id).to_owned(), policies)
                })
                .collect();
            TestResolver { orgs }
        }
    }

    impl PolicyResolver for TestResolver {
        fn org_ids(&self) -> Vec<&str> {
            self.orgs.iter().map(|(id, _)| id.as_str()).collect()
        }

        fn org_policy(&self, msp_id: &str, name: &str) -> Option<&SignaturePolicy> {
            let (_, policies) = self.orgs.iter().find(|(id, _)| id == msp_id)?;
            policies
                .iter()
                .find(|(policy_name, _)| policy_name == name)
                .map(|(_, policy)| policy)
        }
    }

    #[test]
    fn signature_policies_evaluate_per_table() {
        // (what the case guards, policy, signers as key:MSP:roles, expected)
        let cases: &[(&str, &str, &[&str], bool)] = &[
            ("signed by, match", "'A.peer'", &["p1:A:peer"], true),
            ("signed by, wrong org", "'A.peer'", &["p1:B:peer"], false),
            ("signed by, wrong role", "'A.peer'", &["c1:A:client"], false),
            ("no signers", "'A.member'", &[], false),
            (
                "member matches a client",
                "'A.member'",
                &["c1:A:client"],
                true,
            ),
            ("member matches a peer", "'A.member'", &["p1:A:peer"], true),
            ("member matches no role", "'A.member'", &["m1:A:"], true),
            ("member, wrong org", "'A.member'", &["p1:B:peer"], false),
            ("admin", "'A.admin'", &["a1:A:admin"], true),
            ("admin, a peer is not", "'A.admin'", &["p1:A:peer"], false),
            ("client", "'A.client'", &["c1:A:client"], true),
            (
                "client, an admin is not",
                "'A.client'",
                &["a1:A:admin"],
                false,
            ),
            ("peer", "'A.peer'", &["p1:A:peer+admin"], true),
            ("orderer", "'A.orderer'", &["o1:A:orderer"], true),
            (
                "orderer, a peer is not",
                "'A.orderer'",
                &["p1:A:peer"],
                false,
            ),
            ("auditor", "'A.auditor'", &["u1:A:auditor"], true),
            (
                "auditor, a client is not",
                "'A.auditor'",
                &["c1:A:client"],
                false,
            ),
            (
                "AND, all present",
                "AND('A.peer', 'B.peer')",
                &["p1:A:peer", "p2:B:peer"],
                true,
            ),
            (
                "AND, one missing",
                "AND('A.peer', 'B.peer')",
                &["p1:A:peer"],
                false,
            ),
            (
                "OR, second present",
                "OR('A.peer', 'B.peer')",
                &["p2:B:peer"],
                true,
            ),
            (
                "OR, none present",
                "OR('A.peer', 'B.peer')",
                &["p3:C:peer"],
                false,
            ),
            (
                "OutOf 2 of 3, satisfied",
                "OutOf(2, 'A.peer', 'B.peer', 'C.peer')",
                &["p1:A:peer", "p3:C:peer"],
                true,
            ),
            (
                "OutOf 2 of 3, one short",
                "OutOf(2, 'A.peer', 'B.peer', 'C.peer')",
                &["p2:B:peer", "c1:A:client"],
                false,
            ),
            (
                "same signer listed twice counts once",
                "AND('A.peer', 'A.peer')",
                &["p1:A:peer", "p1:A:peer"],
                false,
            ),
            (
                "two distinct peers",
                "AND('A.peer', 'A.peer')",
                &["p1:A:peer", "p2:A:peer"],
                true,
            ),
            (
                "one signer cannot fill two roles",
                "AND('A.peer', 'A.admin')",
                &["pa:A:peer+admin"],
                false,
            ),
            (
                "duplicate key keeps the first occurrence",
                "'A.admin'",
                &["k:A:peer", "k:A:admin"],
                false,
            ),
            (
                "not greedy: the peer is kept for the peer principal",
                "AND('A.member', 'A.peer')",
                &["peer1:A:peer", "client1:A:client"],
                true,
            ),
            (
                "not greedy across levels",
                "AND(OR('A.member', 'B.member'), 'A.admin')",
                &["adm:A:admin", "b1:B:client"],
                true,
            ),
            (
                "not greedy inside OutOf",
                "OutOf(2, 'A.member', 'A.admin', 'A.peer')",
                &["ap:A:admin+peer", "c:A:client"],
                true,
            ),
            (
                "nested, second branch",
                "OR(AND('A.peer', 'B.peer'), AND('C.admin', OutOf(1, 'D.orderer', 'E.auditor')))",
                &["ca:C:admin", "eu:E:auditor"],
                true,
            ),
            (
                "nested, inner threshold unmet",
                "OR(AND('A.peer', 'B.peer'), AND('C.admin', OutOf(1, 'D.orderer', 'E.auditor')))",
                &["ca:C:admin", "dp:D:peer", "p1:A:peer"],
                false,
            ),
            (
                "MSP ids containing dots",
                "'org1.example.com.peer'",
                &["p:org1.example.com:peer"],
                true,
            ),
        ];
        for (name, text, specs, expected) in cases {
            let policy = signature(text);
            assert_eq!(
                policy.evaluate(&signers(specs)),
                *expected,
                "{name}: {text} with {specs:?}"
            );
        }
    }

    #[test]
    fn implicit_meta_policies_evaluate_per_table() {
        // (what the case guards, organisations, sub-policies missing, policy, signers, expected)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [(&'a str, &'a str)],
            &'a str,
            &'a [&'a str],
            bool,
        );
        let abc: &[&str] = &["A", "B", "C"];
        let cases: &[Case] = &[
            (
                "MAJORITY of 3, two satisfied",
                abc,
                &[],
                "MAJORITY Endorsement",
                &["pa:A:peer", "pb:B:peer"],
                true,
            ),
            (
                "MAJORITY of 3, one satisfied",
                abc,
                &[],
                "MAJORITY Endorsement",
                &["pa:A:peer", "cb:B:client"],
                false,
            ),
            (
                "MAJORITY of 2 needs both",
                &["A", "B"],
                &[],
                "MAJORITY Endorsement",
                &["pa:A:peer"],
                false,
            ),
            (
                "MAJORITY of 2, both satisfied",
                &["A", "B"],
                &[],
                "MAJORITY Endorsement",
                &["pa:A:peer", "pb:B:peer"],
                true,
            ),
            (
                "ALL, every org",
                abc,
                &[],
                "ALL Admins",
                &["aa:A:admin", "ab:B:admin", "ac:C:admin"],
                true,
            ),
            (
                "ALL, one org short",
                abc,
                &[],
                "ALL Admins",
                &["aa:A:admin", "ab:B:admin", "pc:C:peer"],
                false,
            ),
            (
                "ANY, one org",
                abc,
                &[],
                "ANY Writers",
                &["cb:B:client"],
                true,
            ),
            (
                "ANY, only outsiders",
                abc,
                &[],
                "ANY Writers",
                &["cd:D:client"],
                false,
            ),
            (
                "an org without the sub-policy is not satisfied",
                abc,
                &[("C", "Endorsement")],
                "ALL Endorsement",
                &["pa:A:peer", "pb:B:peer", "pc:C:peer"],
                false,
            ),
            (
                "an org without the sub-policy still counts towards the total",
                abc,
                &[("B", "Endorsement"), ("C", "Endorsement")],
                "MAJORITY Endorsement",
                &["pa:A:peer", "pb:B:peer", "pc:C:peer"],
                false,
            ),
            (
                "unknown sub-policy",
                abc,
                &[],
                "ANY Readers",
                &["pa:A:peer"],
                false,
            ),
            (
                "ALL of no orgs",
                &[],
                &[],
                "ALL Admins",
                &["aa:A:admin"],
                false,
            ),
            (
                "ANY of no orgs",
                &[],
                &[],
                "ANY Admins",
                &["aa:A:admin"],
                false,
            ),
            (
                "MAJORITY of no orgs",
                &[],
                &[],
                "MAJORITY Admins",
                &["aa:A:admin"],
                false,
            ),
            (
                "an org listed twice counts once",
                &["A", "A", "B", "C"],
                &[],
                "MAJORITY Endorsement",
                &["pa:A:peer"],
                false,
            ),
            (
                "a signature policy ignores the resolver",
                &[],
                &[],
                "'A.peer'",
                &["pa:A:peer"],
                true,
            ),
        ];
        for (name, orgs, missing, text, specs, expected) in cases {
            let resolver = TestResolver::new(orgs, missing);
            assert_eq!(
                policy(text).evaluate(&signers(specs), &resolver),
                *expected,
                "{name}: {text} over {orgs:?} with {specs:?}"
            );
        }
    }

    #[test]
    fn resolver_may_be_a_trait_object() {
        let resolver = TestResolver::new(&["A"], &[]);
        let dynamic: &dyn PolicyResolver = &resolver;
        assert!(policy("ANY Endorsement").evaluate(&signers(&["p:A:peer"]), dynamic));
    }

    /// Valid texts and their canonical `Display`.
    fn valid_texts() -> Vec<(String, String)> {
        let mut cases: Vec<(String, String)> = [
            ("'Org1MSP.member'", "'Org1MSP.member'"),
            ("\"Org1MSP.admin\"", "'Org1MSP.admin'"),
            (
                "AND('Org1MSP.member', 'Org2MSP.member')",
                "AND('Org1MSP.member', 'Org2MSP.member')",
            ),
            ("and('A.peer','B.peer')", "AND('A.peer', 'B.peer')"),
            (
                "Or(\"A.client\", 'B.orderer')",
                "OR('A.client', 'B.orderer')",
            ),
            (
                "OutOf(2, 'A.peer', 'B.peer', 'C.auditor')",
                "OutOf(2, 'A.peer', 'B.peer', 'C.auditor')",
            ),
            ("OUTOF(1,'A.peer','B.peer')", "OR('A.peer', 'B.peer')"),
            ("outof(2, 'A.peer', 'B.peer')", "AND('A.peer', 'B.peer')"),
            (
                "OutOf(02, 'A.peer', 'B.peer', 'C.peer')",
                "OutOf(2, 'A.peer', 'B.peer', 'C.peer')",
            ),
            ("OR('A.peer')", "AND('A.peer')"),
            (
                " \n AND ( 'a.b-c_d.auditor' ,\t OR('X.peer','Y.peer') ) \r\n",
                "AND('a.b-c_d.auditor', OR('X.peer', 'Y.peer'))",
            ),
            (
                "OR(AND('A.peer', 'B.peer'), OutOf(2, 'C.admin', 'D.admin', AND('E.client')))",
                "OR(AND('A.peer', 'B.peer'), OutOf(2, 'C.admin', 'D.admin', AND('E.client')))",
            ),
            ("ANY Writers", "ANY Writers"),
            ("  ALL\tAdmins ", "ALL Admins"),
            ("MAJORITY Endorsement", "MAJORITY Endorsement"),
            ("ANY Org-1_Readers2", "ANY Org-1_Readers2"),
        ]
        .into_iter()
        .map(|(text, canonical)| (text.to_owned(), canonical.to_owned()))
        .collect();
        cases.push((nested(MAX_DEPTH), nested(MAX_DEPTH)));
        let most = vec!["'A.peer'"; MAX_PRINCIPALS].join(", ");
        cases.push((format!("OR({most})"), format!("OR({most})")));
        cases
    }

    #[test]
    fn valid_texts_display_canonically() {
        for (text, canonical) in valid_texts() {
            assert_eq!(policy(&text).to_string(), canonical, "{text:?}");
        }
    }

    #[test]
    fn display_parses_back_to_the_same_policy() {
        for (text, _) in valid_texts() {
            let parsed = policy(&text);
            let reparsed = policy(&parsed.to_string());
            assert_eq!(reparsed, parsed, "{text:?}");
            assert_eq!(reparsed.to_string(), parsed.to_string(), "{text:?}");
        }
    }

    #[test]
    fn parser_builds_the_expected_tree() {
        let expected = SignaturePolicy::and(vec![
            SignaturePolicy::signed_by(Principal::new("a.b-c_d", MspRole::Auditor)),
            SignaturePolicy::out_of(
                2,
                vec![
                    SignaturePolicy::signed_by(Principal::new("X", MspRole::Peer)),
                    SignaturePolicy::signed_by(Principal::new("Y", MspRole::Peer)),
                    SignaturePolicy::signed_by(Principal::new("Z", MspRole::Orderer)),
                ],
            ),
        ]);
        assert_eq!(
            signature("AND('a.b-c_d.auditor', OutOf(2, 'X.peer', 'Y.peer', 'Z.orderer'))"),
            expected
        );
        assert_eq!(
            policy("MAJORITY Endorsement"),
            Policy::ImplicitMeta(ImplicitMetaPolicy {
                rule: ImplicitMetaRule::Majority,
                sub_policy: "Endorsement".to_owned(),
            })
        );
    }

    #[test]
    fn invalid_texts_are_rejected_with_what_and_where() {
        let too_long = format!("OR({})", vec!["'Org1MSP.member'"; 300].join(", "));
        let too_many = format!("OR({})", vec!["'A.peer'"; MAX_PRINCIPALS + 1].join(","));
        // (text, a fragment the error message must contain)
        let cases: Vec<(String, &str)> = [
            (
                "",
                "unexpected end of policy text at byte 0, expected a principal",
            ),
            ("   ", "end of policy text at byte 3"),
            (
                "AND('A.peer'",
                "end of policy text at byte 12, expected ',' or ')'",
            ),
            ("AND('A.peer'))", "trailing ')' at byte 13"),
            ("AND('A.peer') junk", "trailing word \"junk\" at byte 14"),
            ("ANY Writers extra", "trailing word \"extra\" at byte 12"),
            (
                "AND('A.peer', 'B.boss')",
                "unknown role \"boss\" at byte 17",
            ),
            ("'A.Peer'", "unknown role \"Peer\" at byte 3"),
            ("OutOf(0, 'A.peer')", "threshold at byte 6 is 0"),
            (
                "OutOf(3, 'a.peer', 'b.peer')",
                "threshold 3 at byte 6 exceeds its 2 sub-policies",
            ),
            (
                "OutOf(1)",
                "threshold 1 at byte 6 exceeds its 0 sub-policies",
            ),
            ("OutOf(x, 'A.peer')", "threshold \"x\" at byte 6"),
            (
                "OutOf(99999999999999999999999, 'A.peer')",
                "threshold \"99999999999999999999999\" at byte 6",
            ),
            (
                "OutOf('A.peer')",
                "unexpected principal \"A.peer\" at byte 6",
            ),
            ("AND()", "AND at byte 0 has no sub-policies"),
            (" or ( )", "OR at byte 1 has no sub-policies"),
            ("\u{0}\u{1}", "unexpected character '\\0' at byte 0"),
            (
                "AND('A.peer'\u{7f})",
                "unexpected character '\\u{7f}' at byte 12",
            ),
            ("\u{1F600}", "at byte 0"),
            ("'A\u{0}.peer'", "character '\\0' at byte 2"),
            ("'A B.peer'", "character ' ' at byte 2"),
            ("'Org1MSP'", "principal \"Org1MSP\" at byte 1 has no role"),
            (
                "'.peer'",
                "principal \".peer\" at byte 1 has an empty MSP id",
            ),
            ("AND('A.peer\")", "quote at byte 4 is never closed"),
            ("XOR('A.peer')", "unknown operator \"XOR\" at byte 0"),
            ("any Writers", "unknown operator \"any\" at byte 0"),
            (
                "ANY",
                "end of policy text at byte 3, expected a sub-policy name",
            ),
            ("ANY Wri.ters", "unexpected character '.' at byte 7"),
            ("ANY 'A.peer'", "unexpected principal \"A.peer\" at byte 4"),
            ("AND('A.peer',)", "unexpected ')' at byte 13"),
            ("AND('A.peer' 'B.peer')", "at byte 13, expected ',' or ')'"),
            ("AND 'A.peer'", "at byte 4, expected '(' after the operator"),
            ("(('A.peer'))", "unexpected '(' at byte 0"),
        ]
        .into_iter()
        .map(|(text, fragment)| (text.to_owned(), fragment))
        .chain([
            (
                nested(MAX_DEPTH + 1),
                "at byte 64 nests deeper than 16 levels",
            ),
            (too_long, "more than the limit of 4096"),
            (too_many, "beyond the limit of 64 principals"),
        ])
        .collect();
        for (text, fragment) in &cases {
            match text.parse::<Policy>() {
                Ok(parsed) => panic!("{text:?} should be rejected, parsed as {parsed}"),
                Err(error) => {
                    let message = error.to_string();
                    assert!(
                        message.contains(fragment),
                        "{text:?}: {message:?} should contain {fragment:?}"
                    );
                    assert!(!message.ends_with('.'), "{message:?} ends with a period");
                }
            }
        }
    }

    #[test]
    fn signature_policy_text_refuses_implicit_meta() {
        assert_eq!(
            "  ANY Writers".parse::<SignaturePolicy>(),
            Err(PolicyError::NotSignaturePolicy {
                policy: "ANY Writers".to_owned(),
                offset: 2,
            })
        );
    }

    #[test]
    fn roles_display_and_parse_in_lower_case() {
        for role in MspRole::ALL {
            assert_eq!(role.to_string().parse::<MspRole>(), Ok(role));
        }
        assert_eq!(MspRole::Orderer.to_string(), "orderer");
        assert!("Admin".parse::<MspRole>().is_err());
        assert_eq!(
            Principal::new("Org1MSP", MspRole::Peer).to_string(),
            "'Org1MSP.peer'"
        );
    }

    #[test]
    fn msp_ids_are_sorted_and_deduplicated() {
        let policy = signature("OR(AND('B.peer', 'A.peer'), 'B.admin', OutOf(1, 'C.member'))");
        assert_eq!(policy.msp_ids(), vec!["A", "B", "C"]);
    }

    #[test]
    fn policies_serialize_as_their_text() {
        let parsed = policy("and('A.peer',  'B.peer')");
        let json = serde_json::to_string(&parsed).unwrap_or_else(|e| panic!("serialize: {e}"));
        assert_eq!(json, "\"AND('A.peer', 'B.peer')\"");
        let back: Policy = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(back, parsed);

        let meta: Policy =
            serde_json::from_str("\"MAJORITY Endorsement\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta, policy("MAJORITY Endorsement"));

        let error = serde_json::from_str::<Policy>("\"AND(\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("end of policy text at byte 4"), "{error:?}");
        assert!(serde_json::from_str::<SignaturePolicy>("\"ANY Writers\"").is_err());
    }

    #[test]
    fn code_built_trees_beyond_the_limits_are_never_satisfied() {
        let peer = || SignaturePolicy::signed_by(Principal::new("A", MspRole::Peer));
        let mut deep = peer();
        for _ in 0..=MAX_DEPTH {
            deep = SignaturePolicy::and(vec![deep]);
        }
        assert!(!deep.evaluate(&signers(&["p:A:peer"])));

        let wide = SignaturePolicy::or(vec![peer(); MAX_PRINCIPALS + 1]);
        assert!(!wide.evaluate(&signers(&["p:A:peer"])));

        // Thresholds the parser refuses still have a defined meaning when built in code.
        assert!(SignaturePolicy::out_of(0, vec![]).evaluate::<TestSigner>(&[]));
        assert!(!SignaturePolicy::out_of(2, vec![peer()]).evaluate(&signers(&["p:A:peer"])));
    }

    #[test]
    fn signers_beyond_the_cap_are_ignored() {
        let mut specs: Vec<String> = (0..MAX_SIGNERS).map(|i| format!("c{i}:A:client")).collect();
        specs.push("late:A:admin".to_owned());
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        assert!(!signature("'A.admin'").evaluate(&signers(&specs)));
    }

    #[test]
    fn hostile_policies_evaluate_within_the_step_cap() {
        // Every principal a different organisation, one signer each: found on the first path.
        let principals: Vec<String> = (0..MAX_PRINCIPALS)
            .map(|i| format!("'Org{i}.member'"))
            .collect();
        let text = format!("OutOf(32, {})", principals.join(", "));
        let specs: Vec<String> = (0..MAX_SIGNERS)
            .map(|i| format!("s{i}:Org{i}:peer"))
            .collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        assert!(signature(&text).evaluate(&signers(&specs)));

        // The same principal 64 times: any 32 of the 64 interchangeable signers will do.
        let same = format!(
            "OutOf(32, {})",
            vec!["'A.member'"; MAX_PRINCIPALS].join(", ")
        );
        let specs: Vec<String> = (0..MAX_SIGNERS).map(|i| format!("s{i}:A:peer")).collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        assert!(signature(&same).evaluate(&signers(&specs)));

        // Needing more signers than exist is caught before the search.
        let short = format!("OutOf(33, {})", vec!["'A.peer'"; MAX_PRINCIPALS].join(", "));
        assert!(!signature(&short).evaluate(&signers(&specs[..32])));

        // Unsatisfiable yet past the counting check (34 principals, 34 matching signers): the 32
        // peer principals need every peer, including the only admin, who is also wanted as the
        // admin. The search would try every permutation of the peers; the step cap ends it with
        // `false`.
        let mut specs: Vec<String> = (0..31).map(|i| format!("p{i}:A:peer")).collect();
        specs.extend(["pa:A:peer+admin", "c1:A:client", "c2:A:client"].map(str::to_owned));
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let peers = vec!["'A.peer'"; 32].join(", ");
        let text = format!("AND({peers}, 'A.admin', 'A.client')");
        assert!(!signature(&text).evaluate(&signers(&specs)));
    }
}
