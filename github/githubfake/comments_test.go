package githubfake_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/githubfake"
)

func TestCommentLengthLimit(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 1)
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)

	_, _, err := gh.Issues.CreateComment(c, owner, name, 1, &github.IssueComment{Body: github.String(strings.Repeat("x", 65537))})
	er := errorResponse(t, err, http.StatusUnprocessableEntity)
	if len(er.Errors) != 1 || er.Errors[0].Field != "body" || er.Errors[0].Code != "custom" ||
		!strings.Contains(er.Errors[0].Message, "65536") || er.Message != "Validation Failed" {
		t.Fatalf("422 = %+v", er)
	}
	// The limit counts characters, not bytes.
	for _, body := range []string{strings.Repeat("x", 65536), strings.Repeat("é", 65536)} {
		if _, _, err := gh.Issues.CreateComment(c, owner, name, 1, &github.IssueComment{Body: github.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = gh.Issues.CreateComment(c, owner, name, 1, &github.IssueComment{Body: github.String("  ")})
	errorResponse(t, err, http.StatusUnprocessableEntity)
	id := f.Comments(repo, 1)[0].ID
	_, _, err = gh.Issues.EditComment(c, owner, name, id, &github.IssueComment{Body: github.String(strings.Repeat("y", 65537))})
	errorResponse(t, err, http.StatusUnprocessableEntity)
	if got := len(f.Comments(repo, 1)); got != 2 {
		t.Fatalf("%d comments", got)
	}
}

func TestCommentsPaginateAscendingWithBotLogin(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 2)
	gh := newClient(t, f, tok, revalidating)
	c := ctx(t)

	var botIDs []int64
	for i := 0; i < 75; i++ {
		if i%3 == 0 {
			cm, _, err := gh.Issues.CreateComment(c, owner, name, 1, &github.IssueComment{Body: github.String(fmt.Sprintf("bot %d", i))})
			if err != nil {
				t.Fatal(err)
			}
			if cm.GetUser().GetLogin() != bot || cm.GetUser().GetType() != "Bot" {
				t.Fatalf("comment user = %+v", cm.GetUser())
			}
			botIDs = append(botIDs, cm.GetID())
			continue
		}
		if _, err := f.AddComment(repo, 1, "alice", fmt.Sprintf("human %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.AddComment(repo, 2, "", "other PR"); err != nil {
		t.Fatal(err)
	}

	var all []*github.IssueComment
	opts := &github.IssueListCommentsOptions{}
	pages := 0
	for {
		list, resp, err := gh.Issues.ListComments(c, owner, name, 1, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, list...)
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if pages != 3 || len(all) != 75 {
		t.Fatalf("%d pages, %d comments (default per_page is 30)", pages, len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].GetID() <= all[i-1].GetID() {
			t.Fatalf("ids not ascending at %d", i)
		}
	}
	if all[0].GetBody() != "bot 0" || all[1].GetUser().GetLogin() != "alice" || all[1].GetUser().GetType() != "User" {
		t.Fatalf("first comments = %q by %s", all[0].GetBody(), all[1].GetUser().GetLogin())
	}

	// Edit and delete, as previewd does with its one comment.
	edited, _, err := gh.Issues.EditComment(c, owner, name, botIDs[0], &github.IssueComment{Body: github.String("updated")})
	if err != nil || edited.GetBody() != "updated" {
		t.Fatalf("edit: %v %v", edited.GetBody(), err)
	}
	if got := f.Comments(repo, 1)[0]; got.Body != "updated" || got.Login != bot || !got.UpdatedAt.After(got.CreatedAt) {
		t.Fatalf("human view = %+v", got)
	}
	if _, err := gh.Issues.DeleteComment(c, owner, name, botIDs[1]); err != nil {
		t.Fatal(err)
	}
	_, _, err = gh.Issues.EditComment(c, owner, name, botIDs[1], &github.IssueComment{Body: github.String("again")})
	errorResponse(t, err, http.StatusNotFound)
	_, err = gh.Issues.DeleteComment(c, owner, name, 424242)
	errorResponse(t, err, http.StatusNotFound)
	_, _, err = gh.Issues.GetComment(c, owner, name, botIDs[1])
	errorResponse(t, err, http.StatusNotFound)
	if got := len(f.Comments(repo, 1)); got != 74 {
		t.Fatalf("%d comments after a delete", got)
	}
	_, _, err = gh.Issues.ListComments(c, owner, name, 99, nil)
	errorResponse(t, err, http.StatusNotFound)
}
