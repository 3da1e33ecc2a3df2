package reconcile

import (
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

func TestRenderCommentEscapesAndTrims(t *testing.T) {
	p := model.Preview{Repo: "acme/web", Number: 7, Namespace: "pr-web-7", DesiredSHA: shaA,
		Branch: "x<script>`|[link](http://evil)", Status: model.StatusFailed, Attempts: 3,
		LastError: "CrashLoopBackOff: container app\n--- logs ---\n" + strings.Repeat("password=hunter2 ```\n", 5000)}
	body := RenderComment(p, CommentInfo{URL: "https://pr-web-7.example.com", MaxAttempts: 3}, nil)
	if !strings.HasPrefix(body, Marker("acme/web", 7)) {
		t.Error("marker missing")
	}
	// The quotes are bounded, so the body stays far below GitHub's limit
	// (65,536 characters, which the GitHub client enforces) however much
	// the pods print.
	if limit := 2*maxLogChars + 2048; len(body) > limit {
		t.Errorf("body %d bytes > %d", len(body), limit)
	}
	for _, bad := range []string{"<script>", "](http", "hunter2"} {
		if strings.Contains(body, bad) {
			t.Errorf("body contains %q", bad)
		}
	}
	for _, want := range []string{"❌ Preview failed", "3 of 3", "push a new commit", "CrashLoopBackOff"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q", want)
		}
	}
	first, second := RenderComment(p, CommentInfo{MaxAttempts: 3}, nil), RenderComment(p, CommentInfo{MaxAttempts: 3}, nil)
	if first != second {
		t.Error("rendering is not stable")
	}
}

func TestRenderCommentReadyShowsURL(t *testing.T) {
	p := model.Preview{Repo: "acme/web", Number: 7, Namespace: "pr-web-7", DesiredSHA: shaA, DeployedSHA: shaA, Status: model.StatusReady}
	body := RenderComment(p, CommentInfo{URL: "https://pr-web-7.example.com"}, nil)
	if !strings.Contains(body, "Preview ready") || !strings.Contains(body, "pr-web-7.example.com") || !strings.Contains(body, "`aaaaaaa`") {
		t.Errorf("ready body:\n%s", body)
	}
}

func TestHashCacheRendersOncePerRowVersion(t *testing.T) {
	renders := 0
	c := &HashCache{R: Renderer{maxAttempts: 3, redact: func(s string) string { renders++; return s }}}
	p := model.Preview{Repo: "acme/web", Number: 1, Namespace: "pr-web-1", DesiredSHA: shaA, Status: model.StatusFailed,
		Attempts: 3, LastError: "boom", UpdatedAt: now}
	h1, h2 := c.Hash(p), c.Hash(p)
	if h1 != h2 || renders != 1 {
		t.Fatalf("hashes %q %q after %d renders; want one render", h1, h2, renders)
	}
	p.UpdatedAt = now.Add(time.Second)
	p.LastError = "other"
	if h3 := c.Hash(p); h3 == h1 || renders != 2 {
		t.Errorf("a new row version was not re-rendered (renders=%d)", renders)
	}
	if want := (Renderer{maxAttempts: 3, redact: func(s string) string { return s }}).Hash(p); c.Hash(p) != want {
		t.Error("cached hash differs from a fresh render")
	}
}

// TestCommentNotifiesNobody: a branch (or an error line) with a team
// mention, an issue reference or a URL renders as text: GitHub's
// patterns for them do not match, what a reader sees is unchanged.
func TestCommentNotifiesNobody(t *testing.T) {
	p := model.Preview{Repo: "acme/web", Number: 1, Namespace: "pr-web-1", DesiredSHA: shaA, Status: model.StatusFailed,
		Branch: "@acme/everyone-fixes-#12", LastError: "pull of www.evil.example/x failed, see https://evil.example/@admin"}
	body := RenderComment(p, CommentInfo{MaxAttempts: 3}, nil)
	for _, bad := range []string{"@acme", "#12", "https://evil", "www.evil", "@admin"} {
		if strings.Contains(body, bad) {
			t.Errorf("comment contains %q as GitHub would link or notify it:\n%s", bad, body)
		}
	}
	visible := strings.ReplaceAll(body, "\u2060", "")
	for _, want := range []string{`@acme/everyone-fixes-\#12`, "https://evil.example/@admin"} {
		if !strings.Contains(visible, want) {
			t.Errorf("the reader no longer sees %q:\n%s", want, visible)
		}
	}
}

// TestCommentKeepsThePreviewLink: previewd's own URL stays a link.
func TestCommentKeepsThePreviewLink(t *testing.T) {
	p := model.Preview{Repo: "acme/web", Number: 1, Namespace: "pr-web-1", DesiredSHA: shaA, Status: model.StatusReady, Branch: "@x"}
	body := RenderComment(p, CommentInfo{URL: "https://pr-web-1.preview.example.com"}, nil)
	if !strings.Contains(body, "| URL | https://pr-web-1.preview.example.com |") {
		t.Errorf("the preview URL is not a plain link:\n%s", body)
	}
}
