package reconcile

import (
	"crypto/sha256"
	"sync"
	"time"

	"encoding/hex"
	"fmt"
	"github.com/previewd/previewd/internal/config"
	"regexp"
	"strings"

	"github.com/previewd/previewd/state"
)

// MaxCommentLen is GitHub's limit on a comment body.
const MaxCommentLen = 65536

// Marker is the hidden line that identifies previewd's comment on a PR.
func Marker(repo string, number int) string {
	return fmt.Sprintf("<!-- previewd:preview %s#%d -->", repo, number)
}

// CommentInfo is what a comment shows beyond the row.
type CommentInfo struct {
	URL         string // preview URL, "" when the repository sets no host
	MaxAttempts int
}

// RenderComment is the PR comment for a preview row. It contains no
// timestamps, so an unchanged row renders the same body (and the same hash).
func RenderComment(p state.Preview, info CommentInfo, redact func(string) string) string {
	if redact == nil {
		redact = Redact
	}
	var b strings.Builder
	b.WriteString(Marker(p.Repo, p.Number) + "\n")
	sha := p.DesiredSHA
	switch p.Status {
	case state.StatusReady:
		b.WriteString("### ✅ Preview ready\n\n")
	case state.StatusPending, state.StatusDeploying:
		b.WriteString("### ⏳ Preview deploying\n\n")
	case state.StatusFailed:
		b.WriteString("### ❌ Preview failed\n\n")
	case state.StatusDeleting:
		b.WriteString("### 🧹 Preview being removed\n\n")
	case state.StatusDeleted:
		b.WriteString("### 🗑️ Preview removed\n\n")
		b.WriteString("The preview's namespace `" + p.Namespace + "` was deleted (the PR was closed or merged, or no longer matches the repository's filters).\n")
		b.WriteString("\n<sub>Maintained by previewd.</sub>\n")
		return b.String()
	}
	b.WriteString("| | |\n|---|---|\n")
	if info.URL != "" && (p.Status == state.StatusReady || p.Status == state.StatusDeploying || p.Status == state.StatusPending) {
		fmt.Fprintf(&b, "| URL | %s |\n", EscapeMarkdown(info.URL))
	}
	if sha != "" {
		fmt.Fprintf(&b, "| Commit | `%s` |\n", short(sha))
	}
	fmt.Fprintf(&b, "| Namespace | `%s` |\n", p.Namespace)
	if p.Branch != "" {
		fmt.Fprintf(&b, "| Branch | %s |\n", EscapeMarkdown(p.Branch))
	}
	if p.Status == state.StatusFailed && info.MaxAttempts > 0 {
		fmt.Fprintf(&b, "| Attempts | %d of %d |\n", p.Attempts, info.MaxAttempts)
	}
	if p.Status == state.StatusFailed && p.LastError != "" {
		msg, logs, _ := strings.Cut(redact(p.LastError), "\n--- logs ---\n")
		if len(msg) > maxLogChars {
			msg = msg[:maxLogChars]
		}
		b.WriteString("\n**Error:** " + EscapeMarkdown(firstLine(msg)) + "\n")
		if r := rest(msg); r != "" {
			b.WriteString("\n" + fence(r) + "\n")
		}
		if len(logs) > maxLogChars {
			logs = "…\n" + logs[len(logs)-maxLogChars:]
		}
		if logs != "" {
			b.WriteString("\n<details><summary>Last log lines</summary>\n\n" + fence(logs) + "\n</details>\n")
		}
		if info.MaxAttempts > 0 && p.Attempts >= info.MaxAttempts {
			b.WriteString("\nNo more attempts for this commit; push a new commit to try again.\n")
		}
	}
	b.WriteString("\n<sub>Maintained by previewd; this comment is updated in place.</sub>\n")
	return trimComment(b.String())
}

// CommentHash is the hash stored with the comment id.
func CommentHash(body string) string {
	s := sha256.Sum256([]byte(body))
	return hex.EncodeToString(s[:12])
}

// maxLogChars bounds the quoted logs so the comment stays far below
// GitHub's limit whatever the pods print.
const maxLogChars = 8000

func rest(msg string) string { return strings.TrimSpace(strings.TrimPrefix(msg, firstLine(msg))) }

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// fence wraps text in a code block whose fence is longer than any run of
// backticks inside it.
func fence(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	f := strings.Repeat("`", max(3, longest+1))
	return f + "text\n" + strings.TrimRight(s, "\n") + "\n" + f
}

var mdSpecial = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "{", `\{`, "}", `\}`, "[", `\[`, "]", `\]`,
	"(", `\(`, ")", `\)`, "#", `\#`, "+", `\+`, "!", `\!`, "|", `\|`, "~", `\~`,
	"<", "&lt;", ">", "&gt;", "&", "&amp;", "\n", " ", "\r", " ",
)

// EscapeMarkdown makes user-controlled text (titles, branch names) inert in
// a GitHub comment: no links, no HTML, no table breaks, no mentions'
// formatting tricks.
func EscapeMarkdown(s string) string { return mdSpecial.Replace(s) }

func trimComment(body string) string {
	if len(body) <= MaxCommentLen {
		return body
	}
	const note = "\n\n…(trimmed to fit GitHub's comment limit)\n"
	cut := MaxCommentLen - len(note)
	for cut > 0 && !utf8Start(body[cut]) {
		cut--
	}
	return body[:cut] + note
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

var secretPatterns = []*regexp.Regexp{
	regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})`),
	regexp.MustCompile(`\bAKIA[0-9A-Z]{16}\b`),
	regexp.MustCompile(`(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}`),
	regexp.MustCompile(`(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)["']?\s*[:=]\s*["']?)[^\s"',;&]+`),
	regexp.MustCompile(`(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----`),
	regexp.MustCompile(`(://[^/\s:@]+:)[^@\s/]+@`),
	regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`),
}

// Redact removes what looks like a credential from text that is about to
// be shown on a PR or logged (pod logs, error messages).
func Redact(s string) string {
	for _, re := range secretPatterns {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			sub := re.FindStringSubmatch(m)
			if len(sub) > 1 && (strings.HasSuffix(sub[1], "=") || strings.HasSuffix(sub[1], ":") || strings.HasSuffix(sub[1], "\"") || strings.HasSuffix(sub[1], "'") || strings.HasSuffix(sub[1], " ")) {
				return sub[1] + "[REDACTED]"
			}
			if strings.HasPrefix(m, "://") {
				return sub[1] + "[REDACTED]@"
			}
			return "[REDACTED]"
		})
	}
	return s
}

// Redactor also removes the literal secrets previewd knows of (its token).
func Redactor(secrets ...string) func(string) string {
	var lits []string
	for _, s := range secrets {
		if len(s) >= 4 {
			lits = append(lits, s)
		}
	}
	return func(s string) string {
		for _, l := range lits {
			s = strings.ReplaceAll(s, l, "[REDACTED]")
		}
		return Redact(s)
	}
}

// Renderer renders PR comments from preview rows; the executor writes them
// and the planner compares their hashes.
type Renderer struct {
	Repos       map[string]RepoSpec
	MaxAttempts int
	Redact      func(string) string
}

// Info returns what the comment of a preview shows beyond its row.
func (r Renderer) Info(p state.Preview) CommentInfo {
	info := CommentInfo{MaxAttempts: r.MaxAttempts}
	if spec, ok := r.Repos[p.Repo]; ok && spec.Host != "" {
		host, err := config.Render(spec.Host, config.TemplateData{Namespace: p.Namespace,
			PR: config.PRData{Number: p.Number, Branch: p.Branch, SHA: p.DesiredSHA, Title: p.Title}})
		if err == nil && host != "" {
			info.URL = "https://" + host
		}
	}
	return info
}

// Body is the comment of a preview row.
func (r Renderer) Body(p state.Preview) string { return RenderComment(p, r.Info(p), r.Redact) }

// Hash is the hash of Body, for Options.CommentHash.
func (r Renderer) Hash(p state.Preview) string { return CommentHash(r.Body(p)) }

// HashCache remembers comment hashes by row version, so that a cycle does
// not re-render (and re-redact) every preview's comment when nothing
// changed: a failed preview quoting 8 KB of logs costs ~3 ms to render.
type HashCache struct {
	R  Renderer
	mu sync.Mutex
	m  map[state.Key]hashEntry
}

type hashEntry struct {
	updated time.Time
	status  state.Status
	hash    string
}

// Hash returns the comment hash of p, rendering only rows it has not seen
// at this version (UpdatedAt) before.
func (c *HashCache) Hash(p state.Preview) string {
	k := p.Key()
	c.mu.Lock()
	if e, ok := c.m[k]; ok && e.updated.Equal(p.UpdatedAt) && e.status == p.Status && !p.UpdatedAt.IsZero() {
		c.mu.Unlock()
		return e.hash
	}
	c.mu.Unlock()
	h := c.R.Hash(p)
	c.mu.Lock()
	if c.m == nil {
		c.m = map[state.Key]hashEntry{}
	}
	c.m[k] = hashEntry{updated: p.UpdatedAt, status: p.Status, hash: h}
	c.mu.Unlock()
	return h
}
