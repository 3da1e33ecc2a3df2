package reconcile

import (
	"crypto/sha256"
	"sync"
	"time"

	"encoding/hex"
	"fmt"
	"strings"

	"github.com/previewd/previewd/internal/redact"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/reconcile/render"
)

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
// Its quotes are bounded (maxLogChars); the GitHub client trims a body to
// GitHub's limit.
func RenderComment(p model.Preview, info CommentInfo, scrub func(string) string) string {
	if scrub == nil {
		scrub = redact.String
	}
	var b strings.Builder
	b.WriteString(Marker(p.Repo, p.Number) + "\n")
	sha := p.DesiredSHA
	if p.Status == model.StatusDeploying && p.WaitingFor == model.WaitingForImage {
		// A look again for what the preview waits for: the PR keeps
		// saying it waits (no comment write per look).
		p.Status = model.StatusWaiting
	}
	switch p.Status {
	case model.StatusReady:
		b.WriteString("### ✅ Preview ready\n\n")
	case model.StatusPending, model.StatusDeploying:
		b.WriteString("### ⏳ Preview deploying\n\n")
	case model.StatusFailed:
		b.WriteString("### ❌ Preview failed\n\n")
	case model.StatusBlocked:
		b.WriteString("### ⛔ Preview blocked\n\n")
	case model.StatusWaiting:
		switch p.WaitingFor {
		case model.WaitingForChecks:
			b.WriteString("### ⏳ Waiting for checks\n\n")
			b.WriteString("Nothing is deployed until the repository's required checks succeed on this commit.\n\n")
		case model.WaitingForRerun:
			b.WriteString("### ❌ Not deployed: a required check failed\n\n")
			b.WriteString("Re-run the check (a success deploys this commit) or push a new commit.\n\n")
		default:
			b.WriteString("### ⏳ Waiting for the image\n\n")
			b.WriteString("The image of this commit cannot be pulled yet; CI may still be building and pushing it. " +
				"previewd looks again on a growing schedule and deploys it as soon as it is there, without a new push.\n\n")
		}
	case model.StatusDeleting:
		b.WriteString("### 🧹 Preview being removed\n\n")
	case model.StatusDeleted:
		b.WriteString("### 🗑️ Preview removed\n\n")
		b.WriteString("The preview's namespace `" + p.Namespace + "` was deleted (the PR was closed or merged, no longer matches the repository's filters, or its repository is no longer configured in previewd).\n")
		b.WriteString("\n<sub>Maintained by previewd.</sub>\n")
		return b.String()
	}
	b.WriteString("| | |\n|---|---|\n")
	if info.URL != "" && (p.Status == model.StatusReady || p.Status == model.StatusDeploying || p.Status == model.StatusPending) {
		// previewd's own link: escaped, but left a link.
		fmt.Fprintf(&b, "| URL | %s |\n", mdSpecial.Replace(info.URL))
	}
	if sha != "" {
		fmt.Fprintf(&b, "| Commit | `%s` |\n", short(sha))
	}
	fmt.Fprintf(&b, "| Namespace | `%s` |\n", p.Namespace)
	if p.Branch != "" {
		fmt.Fprintf(&b, "| Branch | %s |\n", EscapeMarkdown(p.Branch))
	}
	if p.Status == model.StatusFailed && info.MaxAttempts > 0 {
		fmt.Fprintf(&b, "| Attempts | %d of %d |\n", p.Attempts, info.MaxAttempts)
	}
	if (p.Status == model.StatusFailed || p.Status == model.StatusBlocked || p.Status == model.StatusWaiting) && p.LastError != "" {
		msg, logs, _ := strings.Cut(scrub(p.LastError), "\n--- logs ---\n")
		if len(msg) > maxLogChars {
			msg = msg[:maxLogChars]
		}
		label := "Error"
		switch {
		case p.Status == model.StatusWaiting && p.WaitingFor == model.WaitingForImage:
			label = "Registry says"
		case p.Status == model.StatusWaiting:
			label = "Checks"
		}
		b.WriteString("\n**" + label + ":** " + EscapeMarkdown(firstLine(msg)) + "\n")
		if r := rest(msg); r != "" {
			b.WriteString("\n" + fence(r) + "\n")
		}
		if len(logs) > maxLogChars {
			logs = "…\n" + logs[len(logs)-maxLogChars:]
		}
		if logs != "" {
			b.WriteString("\n<details><summary>Last log lines</summary>\n\n" + fence(logs) + "\n</details>\n")
		}
		if p.Status == model.StatusFailed && p.NextAttemptAt.IsZero() {
			b.WriteString("\nNo more attempts for this commit; push a new commit to try again.\n")
		}
	}
	b.WriteString("\n<sub>Maintained by previewd; this comment is updated in place.</sub>\n")
	return b.String()
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

// wordJoiner is an invisible character that breaks GitHub's mention,
// reference and autolink patterns without changing what a reader sees.
const wordJoiner = "\u2060"

// inert breaks what GitHub links or notifies in rendered text, which
// Markdown escapes do not stop (GitHub finds @team and #123 in the HTML
// text): @mentions, #references, autolinked URLs and www. hosts.
var inert = strings.NewReplacer("@", "@"+wordJoiner, "#", "#"+wordJoiner, "://", ":"+wordJoiner+"//",
	"www.", "www"+wordJoiner+".", "WWW.", "WWW"+wordJoiner+".")

// EscapeMarkdown makes user-controlled text (titles, branch names, error
// lines) inert in a GitHub comment: no links, no HTML, no table breaks, no
// @mentions (a branch named @acme/everyone notifies nobody), no #references
// and no autolinks.
func EscapeMarkdown(s string) string { return mdSpecial.Replace(inert.Replace(s)) }

// Renderer renders PR comments from preview rows; the executor writes them
// and the planner compares their hashes.
type Renderer struct {
	hosts       map[string]*render.Template // by repository
	maxAttempts int
	redact      func(string) string
}

// NewRenderer renders the comments of the repositories in s.
func NewRenderer(s Settings, scrub func(string) string) Renderer {
	r := Renderer{hosts: map[string]*render.Template{}, maxAttempts: s.MaxAttempts, redact: scrub}
	for _, repo := range s.Repos {
		if repo.Host != nil {
			r.hosts[repo.Name] = repo.Host
		}
	}
	return r
}

// Info returns what the comment of a preview shows beyond its row.
func (r Renderer) Info(p model.Preview) CommentInfo {
	info := CommentInfo{MaxAttempts: r.maxAttempts}
	if t, ok := r.hosts[p.Repo]; ok {
		host, err := t.Render(render.Data{Namespace: p.Namespace,
			PR: render.PR{Number: p.Number, Branch: p.Branch, SHA: p.DesiredSHA, Title: p.Title}})
		if err == nil && host != "" {
			info.URL = "https://" + host
		}
	}
	return info
}

// Body is the comment of a preview row.
func (r Renderer) Body(p model.Preview) string { return RenderComment(p, r.Info(p), r.redact) }

// Hash is the hash of Body, for Options.CommentHash.
func (r Renderer) Hash(p model.Preview) string { return CommentHash(r.Body(p)) }

// HashCache remembers comment hashes by row version, so that a cycle does
// not re-render (and re-redact) every preview's comment when nothing
// changed: a failed preview quoting 8 KB of logs costs ~3 ms to render.
type HashCache struct {
	R  Renderer
	mu sync.Mutex
	m  map[model.Key]hashEntry
}

type hashEntry struct {
	updated time.Time
	status  model.Status
	hash    string
}

// Retain drops the hashes of previews that are not in live.
func (c *HashCache) Retain(live []model.Preview) {
	keep := keys(live)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !keep[k] {
			delete(c.m, k)
		}
	}
}

// Len is how many hashes are cached.
func (c *HashCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Hash returns the comment hash of p, rendering only rows it has not seen
// at this version (UpdatedAt) before.
func (c *HashCache) Hash(p model.Preview) string {
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
		c.m = map[model.Key]hashEntry{}
	}
	c.m[k] = hashEntry{updated: p.UpdatedAt, status: p.Status, hash: h}
	c.mu.Unlock()
	return h
}

// keys is the set of the previews' keys.
func keys(ps []model.Preview) map[model.Key]bool {
	out := make(map[model.Key]bool, len(ps))
	for _, p := range ps {
		out[p.Key()] = true
	}
	return out
}
