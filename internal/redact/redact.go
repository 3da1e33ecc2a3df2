// Package redact removes credentials from text that is about to leave
// previewd: PR comments, error messages, log records. It is the one place
// that knows what a credential looks like.
package redact

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// mark replaces what was removed.
const mark = "[REDACTED]"

// A rule replaces every match of re by repl (a regexp template: "$1" keeps
// the key and separator of "password=hunter2", the user of a URL). re can
// only match ASCII text whose lower case contains one of hints (each at
// least two bytes long); the hints spare most log lines the regular
// expressions. When only is set, a match is replaced only if only(match)
// says it is a credential; other matches stay as they are.
type rule struct {
	re    *regexp.Regexp
	repl  string
	hints []string
	only  func(match string) bool
}

// Pieces of the rules below.
const (
	// A PEM marker's label: "RSA PRIVATE KEY", "OPENSSH PRIVATE KEY",
	// "PGP PRIVATE KEY BLOCK".
	pemLabel = `[A-Z ]*PRIVATE KEY(?: BLOCK)?-----`
	// A line of a PEM body: base64, maybe indented, "/" maybe escaped
	// as in JSON ("\/"), ended by a newline or, in JSON, by "\n".
	pemLine = `[ \t]*(?:[A-Za-z0-9+/=]|\\/)+[ \t]*(?:\r?\n|\\r\\n|\\n)`
	// Where the host part of a URL ends: the path, query, fragment, the
	// end of the text or of the token (a quote, a bracket, punctuation,
	// a colon ending a clause as in Go's "dial …: connection refused").
	hostEnd = "(?:[/?#\\s\"'<>`,;|\\\\)\\]}]|:(?:\\s|$)|$)"
	// The host part of a URL: a name or an IP address, maybe a port.
	urlHost = `(?:\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._-]*)(?::[0-9]*)?` + hostEnd
	// What else of a token a token rule takes: a token glued to more
	// token-like text ("ghp_….eyJ…", GitLab's "glpat-….01.…") is removed
	// with all of it, since where it ends cannot be told; a period or
	// dash that ends a sentence stays.
	tokenTail = `(?:[0-9A-Za-z_+/=.~-]*[0-9A-Za-z_=])?`
)

// rules run in this order. A private key goes first, whole, so that no
// other rule rewrites its markers; tokens of a known format next, so that
// a token is always removed whole whatever surrounds it; rules keyed by
// the text around a credential last.
var rules = []rule{
	// PEM private keys; a BEGIN without END runs to the end of the text
	// (a truncated log still must not show the rest of the key). The
	// dashes of a BEGIN may be those that end a marker before it:
	// "…-----END X PRIVATE KEY-----BEGIN Y PRIVATE KEY-----".
	{re: regexp.MustCompile(`-*BEGIN ` + pemLabel + `[\s\S]*?(?:-----END ` + pemLabel + `|$)`), repl: mark,
		hints: []string{"private key"}},
	// An END without BEGIN: the log tail was cut inside the key. The
	// base64 lines just before the END marker, back to the start of the
	// text or to a line that is not base64, are the rest of the key.
	{re: regexp.MustCompile(`(?m)(?:(^|\\n)(?:` + pemLine + `)+[ \t]*)?-----END ` + pemLabel), repl: "${1}" + mark,
		hints: []string{"private key"}},
	// GitHub tokens: personal (classic and fine-grained), OAuth, user,
	// server (installation) and refresh tokens.
	{re: regexp.MustCompile(`(?:gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,})` + tokenTail), repl: mark,
		hints: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}},
	// GitLab tokens: personal, deploy, runner, pipeline trigger, CI/CD
	// job, feed, incoming mail, OAuth application, agent, SCIM and
	// feature flag tokens.
	{re: regexp.MustCompile(`gl(?:pat|dt|rt|rtr|ptt|cbt|ft|imt|oas|agent|soat|ffct)-[0-9A-Za-z_-]{20,}` + tokenTail), repl: mark,
		hints: []string{"glpat-", "gldt-", "glrt-", "glrtr-", "glptt-", "glcbt-", "glft-", "glimt-", "gloas-", "glagent-", "glsoat-", "glffct-"}},
	// AWS access key ids, long-term (AKIA) and temporary (ASIA).
	{re: regexp.MustCompile(`(?:AKIA|ASIA)[0-9A-Z]{16}` + tokenTail), repl: mark, hints: []string{"akia", "asia"}},
	// Google API keys.
	{re: regexp.MustCompile(`AIza[0-9A-Za-z_-]{35}` + tokenTail), repl: mark, hints: []string{"aiza"}},
	// Slack bot, user, app, refresh, legacy and configuration tokens.
	{re: regexp.MustCompile(`(?:xox[abeprs]|xapp)-[0-9A-Za-z-]{10,}` + tokenTail), repl: mark,
		hints: []string{"xox", "xapp-"}},
	// Stripe secret and restricted keys, live and test, and webhook
	// signing secrets. Publishable keys (pk_live_, pk_test_) are public,
	// in every page that takes a payment: they stay.
	{re: regexp.MustCompile(`(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}|whsec_[0-9A-Za-z]{20,})` + tokenTail), repl: mark,
		hints: []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"}},
	// npm access tokens.
	{re: regexp.MustCompile(`npm_[A-Za-z0-9]{36}` + tokenTail), repl: mark, hints: []string{"npm_"}},
	// JWTs (the signature may be empty: alg "none").
	{re: regexp.MustCompile(`eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.` + tokenTail), repl: mark, hints: []string{"eyj"}},
	// Credentials of an HTTP authorization scheme; "token validation" or
	// "basic authentication" are words, not credentials.
	{re: regexp.MustCompile(`(?i)\b(?:bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}`), repl: mark,
		hints: []string{"bearer", "token", "basic"}, only: schemeCredential},
	// The password of a URL, scheme://user:password@host: the user (maybe
	// empty) stays. The password may hold "/" and "@": it ends at the
	// last "@" of the token followed by what can be a host (over-redacting
	// "host:port/path@v1" is the safe side of the ambiguity). When no "@"
	// is, a password without "/" or "@" that ends at an "@" (it may hold
	// a quote). An "@" in a path with no ":" between "://" and the first
	// "/" is not a URL's credential: "https://example.com/path@v1" stays.
	{re: regexp.MustCompile("(://[^\\s/:]*:)(?:[^\\s\"<>`]+@(" + urlHost + ")|[^\\s@/]+@)"), repl: "${1}" + mark + "@${2}",
		hints: []string{"://"}},
	// An Authorization or Proxy-Authorization header or field, whatever
	// its scheme.
	{re: regexp.MustCompile(`(?i)(authorization["']?\s*[:=]\s*["']?)(?:bearer|token|basic)?\s*[^\s"',;]+`), repl: "${1}" + mark,
		hints: []string{"authorization"}},
	// key=value and "key": "value" secrets, with the scheme of a value
	// like "token: Bearer abc". A URL whose user ends in a key
	// ("https://x-access-token:[REDACTED]@github.com/acme/web") had its
	// password removed above: its host and path stay.
	{re: regexp.MustCompile(`(?i)://[^\s/:@]*` + secretKey + `:\[REDACTED\]@|(` + secretKey + `["']?\s*[:=]\s*["']?)(?:(?:bearer|token|basic)\s+)?[^\s"',;&]+`), repl: "${1}" + mark,
		hints: []string{"passw", "pwd", "secret", "token", "key"}, only: notURL},
}

// secretKey is the name of a field whose value is a secret.
const secretKey = `(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)`

// notURL reports whether m is not the user and redacted password of a URL.
func notURL(m string) bool { return !strings.HasPrefix(m, "://") }

// schemeCredential reports whether the word after "Bearer", "Token" or
// "Basic" in m looks like a credential rather than a word of a sentence:
// it has a digit, one of "+/=~", an upper-case letter after the first
// character, or at least 24 characters. Base64 and random tokens do; a
// random token of letters alone, lower-case after its first letter and
// shorter than 24, is rare enough.
func schemeCredential(m string) bool {
	w := m[strings.LastIndexAny(m, " \t\n\v\f\r")+1:]
	if len(w) >= 24 {
		return true
	}
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case '0' <= c && c <= '9', c == '+', c == '/', c == '=', c == '~':
			return true
		case 'A' <= c && c <= 'Z' && i > 0:
			return true
		}
	}
	return false
}

func (r *rule) apply(s string) string {
	// Most texts do not match: finding that out allocates nothing, where
	// ReplaceAllString copies the text.
	if !r.re.MatchString(s) {
		return s
	}
	if r.only == nil {
		return r.re.ReplaceAllString(s, r.repl)
	}
	var b []byte
	last, changed := 0, false
	for _, m := range r.re.FindAllStringSubmatchIndex(s, -1) {
		if !r.only(s[m[0]:m[1]]) {
			continue
		}
		b = append(b, s[last:m[0]]...)
		b = r.re.ExpandString(b, r.repl, s, m)
		last, changed = m[1], true
	}
	if !changed {
		return s
	}
	return string(append(b, s[last:]...))
}

// String removes what looks like a credential from s: PEM private keys
// (also the tail of one whose BEGIN was cut off), GitHub, GitLab, Slack,
// Stripe, npm and Google API tokens, AWS access key ids, JWTs,
// bearer/token/basic credentials, Authorization headers,
// password=/token:/api_key= values and the password of a URL. Keys,
// separators and URL users stay, so that the text still says what was
// removed: "password=[REDACTED]", "postgres://app:[REDACTED]@db". String
// is idempotent.
func String(s string) string {
	// One pass can leave text that a second pass changes: removing a
	// value can bring a URL's "user:" next to a later "@", say. Passes
	// repeat until nothing changes, so that String is idempotent; text
	// without credentials costs one pass.
	for range maxPasses {
		t := pass(s)
		if t == s {
			break
		}
		s = t
	}
	return s
}

// maxPasses bounds the passes of String; two or three suffice in practice.
const maxPasses = 8

func pass(s string) string {
	found := hinted(s)
	for i := range rules {
		if found&(1<<i) == 0 {
			continue
		}
		if t := rules[i].apply(s); t != s {
			s = t
			found = hinted(s)
		}
	}
	return s
}

// The hints of every rule are looked for in one scan of the text, by
// their first two bytes: most pairs of bytes of a log start no hint.
// (strings.Contains for each hint cost several times as much on a log.)
type hint struct {
	text  string // in lower case
	rules uint64 // the rules it is a hint of, a bit each
}

var (
	byFirst [256][]hint          // the hints by their first byte
	pairs   [1 << 16 / 64]uint64 // the first two bytes of a hint, a bit each
	lower   [256]byte            // ASCII lower case
)

func init() {
	if len(rules) > 64 {
		panic("redact: more than 64 rules")
	}
	for c := range lower {
		lower[c] = byte(c)
		if 'A' <= c && c <= 'Z' {
			lower[c] += 'a' - 'A'
		}
	}
	for i, r := range rules {
		for _, h := range r.hints {
			if len(h) < 2 || h != strings.ToLower(h) {
				panic("redact: hint " + h + " is not lower case or too short")
			}
			p := uint16(h[0])<<8 | uint16(h[1])
			pairs[p/64] |= 1 << (p % 64)
			hs := &byFirst[h[0]]
			j := slices.IndexFunc(*hs, func(o hint) bool { return o.text == h })
			if j < 0 {
				*hs = append(*hs, hint{text: h})
				j = len(*hs) - 1
			}
			(*hs)[j].rules |= 1 << i
		}
	}
}

// hinted returns the rules, a bit each, of the hints that s holds in any
// case. When s is not ASCII the hints do not apply and all rules are
// returned: (?i) also matches "ſecret" (U+017F) or the Kelvin sign for
// "k".
func hinted(s string) uint64 {
	var found uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return ^uint64(0)
		}
		if i+1 == len(s) {
			break
		}
		c = lower[c]
		p := uint16(c)<<8 | uint16(lower[s[i+1]])
		if pairs[p/64]&(1<<(p%64)) == 0 {
			continue
		}
		for _, h := range byFirst[c] {
			if found&h.rules != h.rules && hasPrefixFold(s[i:], h.text) {
				found |= h.rules
			}
		}
	}
	return found
}

// hasPrefixFold reports whether s begins with prefix, which is in lower
// case, in ASCII case-insensitive comparison.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower[s[i]] != prefix[i] {
			return false
		}
	}
	return true
}

// New returns a function that removes the given literal secrets (the token
// previewd uses, the database password) and then applies String. Secrets
// shorter than 4 characters are ignored: replacing them would mangle the
// text and hide nothing worth hiding.
func New(secrets ...string) func(string) string {
	var lits []string
	for _, s := range secrets {
		if len(s) >= 4 && !slices.Contains(lits, s) {
			lits = append(lits, s)
		}
	}
	// Longest first, so that a secret containing another is removed whole.
	slices.SortStableFunc(lits, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return func(s string) string {
		for _, l := range lits {
			s = strings.ReplaceAll(s, l, mark)
		}
		return String(s)
	}
}
