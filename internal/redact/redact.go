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
// only match ASCII text whose lower case contains one of hints; the hints
// spare most log lines the regular expressions.
type rule struct {
	re    *regexp.Regexp
	repl  string
	hints []string
}

// rules run in this order. A private key goes first, whole, so that no
// other rule rewrites its markers; GitHub tokens next, so that a token is
// always removed whole whatever surrounds it.
var rules = []rule{
	// PEM private keys; a BEGIN without END runs to the end of the text
	// (a truncated log still must not show the rest of the key).
	{regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)`), mark,
		[]string{"-----begin "}},
	// GitHub tokens: personal (classic and fine-grained), OAuth, user,
	// server (installation) and refresh tokens.
	{regexp.MustCompile(`gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,}`), mark,
		[]string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}},
	// AWS access key ids.
	{regexp.MustCompile(`\bAKIA[0-9A-Z]{16}\b`), mark, []string{"akia"}},
	// JWTs (the signature may be empty: alg "none").
	{regexp.MustCompile(`eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*`), mark, []string{"eyj"}},
	// Credentials of an HTTP authorization scheme.
	{regexp.MustCompile(`(?i)\b(?:bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}`), mark,
		[]string{"bearer", "token", "basic"}},
	// The password of a URL: scheme://user:password@host.
	{regexp.MustCompile(`(://[^/\s:@]+:)[^@\s/]+@`), "${1}" + mark + "@", []string{"://"}},
	// An Authorization header or field, whatever its scheme.
	{regexp.MustCompile(`(?i)(authorization["']?\s*[:=]\s*["']?)(?:bearer|token|basic)?\s*[^\s"',;]+`), "${1}" + mark,
		[]string{"authorization"}},
	// key=value and "key": "value" secrets.
	{regexp.MustCompile(`(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)["']?\s*[:=]\s*["']?)[^\s"',;&]+`), "${1}" + mark,
		[]string{"passw", "pwd", "secret", "token", "key"}},
}

// String removes what looks like a credential from s: GitHub tokens
// (ghp_…, github_pat_…), AWS access key ids, JWTs, bearer/token/basic
// credentials, Authorization headers, password=/token:/api_key= values,
// PEM private keys and the password of a URL. Keys, separators and URL
// users stay, so that the text still says what was removed:
// "password=[REDACTED]", "postgres://app:[REDACTED]@db". String is
// idempotent.
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
	lower, ascii := lowerASCII(s)
	for _, r := range rules {
		if ascii && !containsAny(lower, r.hints) {
			continue
		}
		if t := r.re.ReplaceAllString(s, r.repl); t != s {
			s = t
			lower, ascii = lowerASCII(s)
		}
	}
	return s
}

// lowerASCII returns s in lower case and true when s is ASCII. Otherwise
// the hints do not apply: (?i) also matches "ſecret" (U+017F) or the
// Kelvin sign for "k".
func lowerASCII(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
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
