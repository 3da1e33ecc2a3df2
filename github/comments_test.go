package github

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/previewd/previewd/github/ghlimits"
	"github.com/previewd/previewd/github/githubfake"
)

const marker = "<!-- previewd:acme/web#1 -->"

func botComments(f *githubfake.Server, n int, login string) []githubfake.Comment {
	var out []githubfake.Comment
	for _, c := range f.Comments(testRepo, n) {
		if c.Login == login {
			out = append(out, c)
		}
	}
	return out
}

func TestUpsertCommentCreatesOnceThenEdits(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)

	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\n### ⏳ Preview deploying")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := e.c.UpsertComment(ctx, testRepo, n, id, marker, marker+"\n### ✅ Preview ready")
	if err != nil {
		t.Fatal(err)
	}
	if id2 != id {
		t.Fatalf("second upsert returned %d, want %d", id2, id)
	}
	cs := e.f.Comments(testRepo, n)
	if len(cs) != 1 || cs[0].ID != id || cs[0].Login != botLogin || !strings.Contains(cs[0].Body, "Preview ready") {
		t.Fatalf("comments = %+v", cs)
	}
	cnt := e.f.Counters()
	if cnt.Route(githubfake.RouteCreateIssueComment, 0) != 1 || cnt.Route(githubfake.RouteEditIssueComment, http.StatusOK) != 1 {
		t.Fatalf("by route = %v", cnt.ByRoute)
	}
	// The stored id is edited without listing.
	if got := cnt.Route(githubfake.RouteListIssueComments, 0); got != 1 {
		t.Fatalf("comment listings = %d, want 1 (only for the first upsert)", got)
	}

	// Without the id (state lost), the comment is found, not duplicated,
	// and the login is asked only once.
	id3, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\nagain")
	if err != nil || id3 != id {
		t.Fatalf("upsert without id = %d, %v; want %d", id3, err, id)
	}
	if cs := e.f.Comments(testRepo, n); len(cs) != 1 {
		t.Fatalf("comments = %+v", cs)
	}
	if got := e.f.Counters().Route(githubfake.RouteGetUser, 0); got != 1 {
		t.Fatalf("GET /user sent %d times, want 1", got)
	}
}

func TestUpsertCommentFindsItsCommentAcrossPages(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	e.f.AddTokenAs("ghp_human_alice_token_0000000000000000", "alice", 0)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)

	// A human quotes the marker early on: never to be taken over.
	quoted, _ := e.f.AddComment(testRepo, n, "mallory", "Why does the bot write "+marker+"?")
	for i := range 130 {
		if _, err := e.f.AddComment(testRepo, n, "alice", fmt.Sprintf("review comment %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// previewd's comment is on page 2; previewd lost its id.
	mine, _ := e.f.AddComment(testRepo, n, botLogin, marker+"\nold status")
	for i := range 40 {
		e.f.AddComment(testRepo, n, "alice", fmt.Sprintf("more %d", i))
	}
	// A newer duplicate by previewd (an older bug): the oldest one wins.
	dup, _ := e.f.AddComment(testRepo, n, botLogin, marker+"\nduplicate")
	// The id previewd stored points at a comment a human deleted.
	stale, _ := e.f.AddComment(testRepo, n, "alice", "to be deleted")
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%srepos/%s/issues/comments/%d", e.f.APIURL(), testRepo, stale), nil)
	req.Header.Set("Authorization", "token ghp_human_alice_token_0000000000000000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("deleting: %v %v", resp, err)
	}
	resp.Body.Close()
	total := len(e.f.Comments(testRepo, n))

	id, err := e.c.UpsertComment(ctx, testRepo, n, stale, marker, marker+"\nnew status")
	if err != nil {
		t.Fatal(err)
	}
	if id != mine {
		t.Fatalf("updated comment %d, want previewd's oldest %d (quoted %d, duplicate %d)", id, mine, quoted, dup)
	}
	cs := e.f.Comments(testRepo, n)
	if len(cs) != total {
		t.Fatalf("%d comments after the upsert, want %d (no new one)", len(cs), total)
	}
	for _, c := range cs {
		switch c.ID {
		case mine:
			if !strings.HasSuffix(c.Body, "new status") {
				t.Errorf("previewd's comment = %q", c.Body)
			}
		case quoted:
			if c.Body != "Why does the bot write "+marker+"?" {
				t.Errorf("the human's comment was changed: %q", c.Body)
			}
		case dup:
			if !strings.HasSuffix(c.Body, "duplicate") {
				t.Errorf("the duplicate was changed: %q", c.Body)
			}
		}
	}
	if got := e.f.Counters().Route(githubfake.RouteListIssueComments, http.StatusOK); got != 2 {
		t.Fatalf("comment pages = %d, want 2", got)
	}
}

func TestUpsertCommentAfterHumanDeletedIt(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	e.f.AddTokenAs("ghp_human_alice_token_0000000000000000", "alice", 0)
	ctx := testCtx(t)
	// Only a human's quote of the marker is left.
	e.f.AddComment(testRepo, n, "mallory", "quoting "+marker)
	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\nfirst")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%srepos/%s/issues/comments/%d", e.f.APIURL(), testRepo, id), nil)
	req.Header.Set("Authorization", "token ghp_human_alice_token_0000000000000000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("deleting: %v %v", resp, err)
	}
	resp.Body.Close()

	id2, err := e.c.UpsertComment(ctx, testRepo, n, id, marker, marker+"\nsecond")
	if err != nil {
		t.Fatal(err)
	}
	if id2 == id {
		t.Fatal("returned the deleted comment's id")
	}
	mine := botComments(e.f, n, botLogin)
	if len(mine) != 1 || mine[0].ID != id2 || !strings.HasSuffix(mine[0].Body, "second") {
		t.Fatalf("previewd's comments = %+v", mine)
	}
	if all := e.f.Comments(testRepo, n); len(all) != 2 || all[0].Body != "quoting "+marker {
		t.Fatalf("comments = %+v", all)
	}
}

func TestUpsertCommentTrimsLongBodies(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	for name, body := range map[string]string{
		"marker first": marker + "\n" + strings.Repeat("x", 70000),
		"marker last":  strings.Repeat("é", 70000) + "\n" + marker,
	} {
		t.Run(name, func(t *testing.T) {
			id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, body)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range e.f.Comments(testRepo, n) {
				if c.ID != id {
					continue
				}
				if l := utf8.RuneCountInString(c.Body); l > ghlimits.MaxCommentLength || l < ghlimits.MaxCommentLength-100 {
					t.Fatalf("stored %d characters", l)
				}
				if !strings.Contains(c.Body, marker) || !strings.Contains(c.Body, "trimmed") {
					t.Fatalf("trimmed body lost the marker or the note: ...%q", c.Body[len(c.Body)-200:])
				}
				return
			}
			t.Fatalf("comment %d not found", id)
		})
	}
}

func TestTrimComment(t *testing.T) {
	short := marker + "\nhello"
	if got, err := trimComment(short, marker); err != nil || got != short {
		t.Fatalf("short body changed: %q %v", got, err)
	}
	// A cut inside an HTML comment must not hide the note and the marker.
	body := strings.Repeat("a", ghlimits.MaxCommentLength-200) + "<!-- " + strings.Repeat("b", 500) + " -->" + marker
	got, err := trimComment(body, marker)
	if err != nil {
		t.Fatal(err)
	}
	if utf8.RuneCountInString(got) > ghlimits.MaxCommentLength || !strings.HasSuffix(got, marker+"\n") || strings.Contains(got, "<!-- b") {
		t.Fatalf("trimmed = ...%q", got[len(got)-300:])
	}
	if _, err := trimComment(strings.Repeat("m", ghlimits.MaxCommentLength+1), strings.Repeat("m", ghlimits.MaxCommentLength+1)); err == nil {
		t.Fatal("a marker longer than the limit was accepted")
	}
}

func TestUpsertCommentValidates(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)
	for name, call := range map[string]func() error{
		"no marker in body": func() error { _, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, "hello"); return err },
		"empty marker":      func() error { _, err := e.c.UpsertComment(ctx, testRepo, n, 0, " ", "hello"); return err },
		"bad number":        func() error { _, err := e.c.UpsertComment(ctx, testRepo, 0, 0, marker, marker); return err },
		"bad repo":          func() error { _, err := e.c.UpsertComment(ctx, "web", n, 0, marker, marker); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := e.f.Counters().Requests; got != 0 {
		t.Fatalf("%d requests sent for invalid calls", got)
	}
}

func TestUpsertCommentWithoutLoginMatchesMarkerOnly(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	n := e.f.OpenPR(testRepo, githubfake.PR{})
	ctx := testCtx(t)

	// GitHub cannot be asked right now: the upsert fails, and asks again.
	e.f.FailNext(githubfake.RouteGetUser, 3, http.StatusBadGateway, 0)
	if _, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\nx"); err == nil {
		t.Fatal("upsert succeeded without knowing whether a comment exists")
	}
	// GitHub refuses to say: fall back to the marker, with a warning.
	e.f.FailNext(githubfake.RouteGetUser, 1, http.StatusNotFound, 0)
	other, _ := e.f.AddComment(testRepo, n, "someone", marker+"\nposted under another login")
	id, err := e.c.UpsertComment(ctx, testRepo, n, 0, marker, marker+"\nx")
	if err != nil {
		t.Fatal(err)
	}
	if id != other {
		t.Fatalf("updated %d, want %d (marker only)", id, other)
	}
	if !strings.Contains(e.logs.String(), "matching comments by marker only") {
		t.Fatalf("no warning logged:\n%s", e.logs.String())
	}
	if got := e.f.Counters().Route(githubfake.RouteGetUser, 0); got != 4 {
		t.Fatalf("GET /user sent %d times, want 4 (3 failed tries, then one answer)", got)
	}
}
