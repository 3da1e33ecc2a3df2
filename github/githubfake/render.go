package githubfake

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// The JSON shapes below follow GitHub's REST responses (fields previewd and
// go-github read, and enough of the rest to look like GitHub). Fields that
// GitHub sends as null are pointers without omitempty.

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func tsPtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	v := ts(t)
	return &v
}

func strPtr(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

func nodeID(kind string, id int64) string {
	return kind + "_" + base64.RawStdEncoding.EncodeToString([]byte(fmt.Sprintf("%s:%d", kind, id)))
}

func isBot(login string) bool { return strings.HasSuffix(login, "[bot]") }

type userJSON struct {
	Login     string `json:"login"`
	ID        int64  `json:"id"`
	NodeID    string `json:"node_id"`
	AvatarURL string `json:"avatar_url"`
	URL       string `json:"url"`
	HTMLURL   string `json:"html_url"`
	Type      string `json:"type"`
	SiteAdmin bool   `json:"site_admin"`
}

func (s *Server) userJSON(c *call, login string) userJSON {
	id := s.userID(login)
	u := userJSON{
		Login:     login,
		ID:        id,
		NodeID:    nodeID("U", id),
		AvatarURL: fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", id),
		URL:       c.api + "users/" + url.PathEscape(login),
		HTMLURL:   c.web + url.PathEscape(login),
		Type:      "User",
	}
	if isBot(login) {
		u.Type = "Bot"
		u.NodeID = nodeID("BOT", id)
		u.HTMLURL = c.web + "apps/" + url.PathEscape(strings.TrimSuffix(login, "[bot]"))
	}
	return u
}

type repoJSON struct {
	ID              int64    `json:"id"`
	NodeID          string   `json:"node_id"`
	Name            string   `json:"name"`
	FullName        string   `json:"full_name"`
	Private         bool     `json:"private"`
	Owner           userJSON `json:"owner"`
	HTMLURL         string   `json:"html_url"`
	Description     *string  `json:"description"`
	Fork            bool     `json:"fork"`
	URL             string   `json:"url"`
	PullsURL        string   `json:"pulls_url"`
	StatusesURL     string   `json:"statuses_url"`
	DeploymentsURL  string   `json:"deployments_url"`
	CreatedAt       string   `json:"created_at"`
	UpdatedAt       string   `json:"updated_at"`
	PushedAt        string   `json:"pushed_at"`
	GitURL          string   `json:"git_url"`
	CloneURL        string   `json:"clone_url"`
	Homepage        *string  `json:"homepage"`
	Size            int      `json:"size"`
	StargazersCount int      `json:"stargazers_count"`
	WatchersCount   int      `json:"watchers_count"`
	Language        *string  `json:"language"`
	HasIssues       bool     `json:"has_issues"`
	ForksCount      int      `json:"forks_count"`
	Archived        bool     `json:"archived"`
	Disabled        bool     `json:"disabled"`
	OpenIssuesCount int      `json:"open_issues_count"`
	License         *string  `json:"license"`
	AllowForking    bool     `json:"allow_forking"`
	IsTemplate      bool     `json:"is_template"`
	Topics          []string `json:"topics"`
	Visibility      string   `json:"visibility"`
	Forks           int      `json:"forks"`
	OpenIssues      int      `json:"open_issues"`
	Watchers        int      `json:"watchers"`
	DefaultBranch   string   `json:"default_branch"`
}

func (s *Server) repoJSON(c *call, r *repo) *repoJSON {
	api := c.api + "repos/" + r.fullName()
	open := 0
	for _, p := range r.pulls {
		if p.state == "open" {
			open++
		}
	}
	forks := 0
	for _, other := range s.repos {
		if other.fork && other.name == r.name && other != r {
			forks++
		}
	}
	return &repoJSON{
		ID:              r.id,
		NodeID:          nodeID("R", r.id),
		Name:            r.name,
		FullName:        r.fullName(),
		Owner:           s.userJSON(c, r.owner),
		HTMLURL:         c.web + r.fullName(),
		Fork:            r.fork,
		URL:             api,
		PullsURL:        api + "/pulls{/number}",
		StatusesURL:     api + "/statuses/{sha}",
		DeploymentsURL:  api + "/deployments",
		CreatedAt:       ts(r.createdAt),
		UpdatedAt:       ts(r.updatedAt),
		PushedAt:        ts(r.pushedAt),
		GitURL:          "git://" + strings.TrimPrefix(strings.TrimPrefix(c.web, "https://"), "http://") + r.fullName() + ".git",
		CloneURL:        c.web + r.fullName() + ".git",
		HasIssues:       true,
		ForksCount:      forks,
		OpenIssuesCount: open,
		AllowForking:    true,
		Topics:          []string{},
		Visibility:      "public",
		Forks:           forks,
		OpenIssues:      open,
		DefaultBranch:   r.defaultBranch,
	}
}

// simpleRepoJSON is the short repository GitHub embeds in a combined status:
// nothing in it moves with pushes or pull requests, so the combined status of
// a commit changes only when its statuses do.
type simpleRepoJSON struct {
	ID          int64    `json:"id"`
	NodeID      string   `json:"node_id"`
	Name        string   `json:"name"`
	FullName    string   `json:"full_name"`
	Owner       userJSON `json:"owner"`
	Private     bool     `json:"private"`
	HTMLURL     string   `json:"html_url"`
	Description *string  `json:"description"`
	Fork        bool     `json:"fork"`
	URL         string   `json:"url"`
	PullsURL    string   `json:"pulls_url"`
	StatusesURL string   `json:"statuses_url"`
}

func (s *Server) simpleRepoJSON(c *call, r *repo) *simpleRepoJSON {
	api := c.api + "repos/" + r.fullName()
	return &simpleRepoJSON{
		ID:          r.id,
		NodeID:      nodeID("R", r.id),
		Name:        r.name,
		FullName:    r.fullName(),
		Owner:       s.userJSON(c, r.owner),
		HTMLURL:     c.web + r.fullName(),
		Fork:        r.fork,
		URL:         api,
		PullsURL:    api + "/pulls{/number}",
		StatusesURL: api + "/statuses/{sha}",
	}
}

type labelJSON struct {
	ID          int64   `json:"id"`
	NodeID      string  `json:"node_id"`
	URL         string  `json:"url"`
	Name        string  `json:"name"`
	Color       string  `json:"color"`
	Default     bool    `json:"default"`
	Description *string `json:"description"`
}

type branchJSON struct {
	Label string    `json:"label"`
	Ref   string    `json:"ref"`
	SHA   string    `json:"sha"`
	User  userJSON  `json:"user"`
	Repo  *repoJSON `json:"repo"`
}

type hrefJSON struct {
	Href string `json:"href"`
}

type pullJSON struct {
	URL                string      `json:"url"`
	ID                 int64       `json:"id"`
	NodeID             string      `json:"node_id"`
	HTMLURL            string      `json:"html_url"`
	DiffURL            string      `json:"diff_url"`
	PatchURL           string      `json:"patch_url"`
	IssueURL           string      `json:"issue_url"`
	Number             int         `json:"number"`
	State              string      `json:"state"`
	Locked             bool        `json:"locked"`
	Title              string      `json:"title"`
	User               userJSON    `json:"user"`
	Body               *string     `json:"body"`
	CreatedAt          string      `json:"created_at"`
	UpdatedAt          string      `json:"updated_at"`
	ClosedAt           *string     `json:"closed_at"`
	MergedAt           *string     `json:"merged_at"`
	MergeCommitSHA     *string     `json:"merge_commit_sha"`
	Assignee           *userJSON   `json:"assignee"`
	Assignees          []userJSON  `json:"assignees"`
	RequestedReviewers []userJSON  `json:"requested_reviewers"`
	RequestedTeams     []any       `json:"requested_teams"`
	Labels             []labelJSON `json:"labels"`
	Milestone          *struct{}   `json:"milestone"`
	Draft              bool        `json:"draft"`
	CommitsURL         string      `json:"commits_url"`
	ReviewCommentsURL  string      `json:"review_comments_url"`
	ReviewCommentURL   string      `json:"review_comment_url"`
	CommentsURL        string      `json:"comments_url"`
	StatusesURL        string      `json:"statuses_url"`
	Head               branchJSON  `json:"head"`
	Base               branchJSON  `json:"base"`
	Links              struct {
		Self           hrefJSON `json:"self"`
		HTML           hrefJSON `json:"html"`
		Issue          hrefJSON `json:"issue"`
		Comments       hrefJSON `json:"comments"`
		ReviewComments hrefJSON `json:"review_comments"`
		ReviewComment  hrefJSON `json:"review_comment"`
		Commits        hrefJSON `json:"commits"`
		Statuses       hrefJSON `json:"statuses"`
	} `json:"_links"`
	AuthorAssociation string    `json:"author_association"`
	AutoMerge         *struct{} `json:"auto_merge"`
	ActiveLockReason  *string   `json:"active_lock_reason"`
	*pullDetailJSON
}

// pullDetailJSON holds the fields only GET /pulls/{number} has; the list
// items lack them (notably "merged": use merged_at).
type pullDetailJSON struct {
	Merged              bool      `json:"merged"`
	Mergeable           *bool     `json:"mergeable"`
	Rebaseable          *bool     `json:"rebaseable"`
	MergeableState      string    `json:"mergeable_state"`
	MergedBy            *userJSON `json:"merged_by"`
	Comments            int       `json:"comments"`
	ReviewComments      int       `json:"review_comments"`
	MaintainerCanModify bool      `json:"maintainer_can_modify"`
	Commits             int       `json:"commits"`
	Additions           int       `json:"additions"`
	Deletions           int       `json:"deletions"`
	ChangedFiles        int       `json:"changed_files"`
}

func (s *Server) labelJSON(c *call, r *repo, name string) labelJSON {
	id, ok := r.labelIDs[name]
	if !ok {
		id = 200000 + s.nextID("label")
		r.labelIDs[name] = id
	}
	return labelJSON{
		ID:     id,
		NodeID: nodeID("LA", id),
		URL:    c.api + "repos/" + r.fullName() + "/labels/" + url.PathEscape(name),
		Name:   name,
		Color:  "ededed",
	}
}

func (s *Server) pullJSON(c *call, r *repo, p *pull, detail bool) *pullJSON {
	api := c.api + "repos/" + r.fullName()
	issue := api + "/issues/" + fmt.Sprint(p.number)
	self := api + "/pulls/" + fmt.Sprint(p.number)
	html := c.web + r.fullName() + "/pull/" + fmt.Sprint(p.number)
	j := &pullJSON{
		URL:                self,
		ID:                 p.id,
		NodeID:             nodeID("PR", p.id),
		HTMLURL:            html,
		DiffURL:            html + ".diff",
		PatchURL:           html + ".patch",
		IssueURL:           issue,
		Number:             p.number,
		State:              p.state,
		Title:              p.title,
		User:               s.userJSON(c, p.author),
		Body:               strPtr(p.body),
		CreatedAt:          ts(p.createdAt),
		UpdatedAt:          ts(p.updatedAt),
		ClosedAt:           tsPtr(p.closedAt),
		MergedAt:           tsPtr(p.mergedAt),
		MergeCommitSHA:     strPtr(p.mergeSHA),
		Assignees:          []userJSON{},
		RequestedReviewers: []userJSON{},
		RequestedTeams:     []any{},
		Labels:             []labelJSON{},
		Draft:              p.draft,
		CommitsURL:         self + "/commits",
		ReviewCommentsURL:  self + "/comments",
		ReviewCommentURL:   api + "/pulls/comments{/number}",
		CommentsURL:        issue + "/comments",
		StatusesURL:        api + "/statuses/" + p.headSHA,
		Head: branchJSON{
			Label: p.headOwner + ":" + p.headRef,
			Ref:   p.headRef,
			SHA:   p.headSHA,
			User:  s.userJSON(c, p.headOwner),
		},
		Base: branchJSON{
			Label: r.owner + ":" + p.baseRef,
			Ref:   p.baseRef,
			SHA:   r.branches[p.baseRef],
			User:  s.userJSON(c, r.owner),
			Repo:  s.repoJSON(c, r),
		},
		AuthorAssociation: "CONTRIBUTOR",
	}
	if p.headRepo != nil {
		j.Head.Repo = s.repoJSON(c, p.headRepo)
	}
	if strings.EqualFold(p.author, r.owner) {
		j.AuthorAssociation = "OWNER"
	}
	for _, l := range p.labels {
		j.Labels = append(j.Labels, s.labelJSON(c, r, l))
	}
	j.Links.Self.Href = self
	j.Links.HTML.Href = html
	j.Links.Issue.Href = issue
	j.Links.Comments.Href = issue + "/comments"
	j.Links.ReviewComments.Href = self + "/comments"
	j.Links.ReviewComment.Href = j.ReviewCommentURL
	j.Links.Commits.Href = self + "/commits"
	j.Links.Statuses.Href = j.StatusesURL
	if detail {
		d := &pullDetailJSON{
			Merged:              p.merged,
			MergeableState:      "clean",
			Comments:            len(p.comments),
			MaintainerCanModify: p.fromFork,
			Commits:             1,
			Additions:           1,
			Deletions:           1,
			ChangedFiles:        1,
		}
		if p.state == "open" {
			t := true
			d.Mergeable, d.Rebaseable = &t, &t
		} else {
			d.MergeableState = "unknown"
		}
		if p.merged {
			u := s.userJSON(c, p.mergedBy)
			d.MergedBy = &u
		}
		j.pullDetailJSON = d
	}
	return j
}

type appJSON struct {
	ID     int64  `json:"id"`
	Slug   string `json:"slug"`
	NodeID string `json:"node_id"`
	Name   string `json:"name"`
}

func (s *Server) appJSON() *appJSON {
	if s.opts.App == nil {
		return nil
	}
	a := s.opts.App
	return &appJSON{ID: a.ID, Slug: a.Slug, NodeID: nodeID("A", a.ID), Name: a.Slug}
}

type commentJSON struct {
	URL                   string   `json:"url"`
	HTMLURL               string   `json:"html_url"`
	IssueURL              string   `json:"issue_url"`
	ID                    int64    `json:"id"`
	NodeID                string   `json:"node_id"`
	User                  userJSON `json:"user"`
	CreatedAt             string   `json:"created_at"`
	UpdatedAt             string   `json:"updated_at"`
	AuthorAssociation     string   `json:"author_association"`
	Body                  string   `json:"body"`
	PerformedViaGitHubApp *appJSON `json:"performed_via_github_app"`
}

func (s *Server) commentJSON(c *call, r *repo, cm *comment) commentJSON {
	api := c.api + "repos/" + r.fullName()
	j := commentJSON{
		URL:               fmt.Sprintf("%s/issues/comments/%d", api, cm.id),
		HTMLURL:           fmt.Sprintf("%s%s/pull/%d#issuecomment-%d", c.web, r.fullName(), cm.issue, cm.id),
		IssueURL:          fmt.Sprintf("%s/issues/%d", api, cm.issue),
		ID:                cm.id,
		NodeID:            nodeID("IC", cm.id),
		User:              s.userJSON(c, cm.login),
		CreatedAt:         ts(cm.createdAt),
		UpdatedAt:         ts(cm.updatedAt),
		AuthorAssociation: "NONE",
		Body:              cm.body,
	}
	if strings.EqualFold(cm.login, r.owner) {
		j.AuthorAssociation = "OWNER"
	}
	if cm.app {
		j.PerformedViaGitHubApp = s.appJSON()
	}
	return j
}

type statusJSON struct {
	URL         string   `json:"url"`
	AvatarURL   string   `json:"avatar_url"`
	ID          int64    `json:"id"`
	NodeID      string   `json:"node_id"`
	State       string   `json:"state"`
	Description *string  `json:"description"`
	TargetURL   *string  `json:"target_url"`
	Context     string   `json:"context"`
	CreatedAt   string   `json:"created_at"`
	UpdatedAt   string   `json:"updated_at"`
	Creator     userJSON `json:"creator"`
}

func (s *Server) statusJSON(c *call, r *repo, sha string, st Status) statusJSON {
	creator := s.userJSON(c, st.Creator)
	return statusJSON{
		URL:         c.api + "repos/" + r.fullName() + "/statuses/" + sha,
		AvatarURL:   creator.AvatarURL,
		ID:          st.ID,
		NodeID:      nodeID("SC", st.ID),
		State:       st.State,
		Description: strPtr(st.Description),
		TargetURL:   strPtr(st.TargetURL),
		Context:     st.Context,
		CreatedAt:   ts(st.CreatedAt),
		UpdatedAt:   ts(st.CreatedAt),
		Creator:     creator,
	}
}

func (s *Server) checkRunJSON(c *call, r *repo, sha string, cr CheckRun) map[string]any {
	var completed any
	if !cr.CompletedAt.IsZero() {
		completed = ts(cr.CompletedAt)
	}
	app := s.appJSON()
	if app == nil {
		app = &appJSON{ID: 15368, Slug: "github-actions", NodeID: nodeID("A", 15368), Name: "GitHub Actions"}
	}
	return map[string]any{
		"id":           cr.ID,
		"node_id":      nodeID("CR", cr.ID),
		"head_sha":     sha,
		"external_id":  "",
		"url":          fmt.Sprintf("%srepos/%s/check-runs/%d", c.api, r.fullName(), cr.ID),
		"html_url":     fmt.Sprintf("%s%s/runs/%d", c.web, r.fullName(), cr.ID),
		"details_url":  strPtr(cr.DetailsURL),
		"status":       cr.Status,
		"conclusion":   strPtr(cr.Conclusion),
		"started_at":   tsPtr(cr.StartedAt),
		"completed_at": completed,
		"name":         cr.Name,
		"output": map[string]any{
			"title":             strPtr(cr.Title),
			"summary":           strPtr(cr.Summary),
			"text":              nil,
			"annotations_count": 0,
			"annotations_url":   fmt.Sprintf("%srepos/%s/check-runs/%d/annotations", c.api, r.fullName(), cr.ID),
		},
		"check_suite":   map[string]any{"id": cr.ID},
		"app":           app,
		"pull_requests": []any{},
	}
}

func (s *Server) deploymentJSON(c *call, r *repo, d *Deployment) map[string]any {
	api := c.api + "repos/" + r.fullName()
	self := fmt.Sprintf("%s/deployments/%d", api, d.ID)
	var payload any = map[string]any{}
	if len(d.Payload) > 0 {
		payload = d.Payload
	}
	return map[string]any{
		"url":                    self,
		"id":                     d.ID,
		"node_id":                nodeID("DE", d.ID),
		"sha":                    d.SHA,
		"ref":                    d.Ref,
		"task":                   d.Task,
		"payload":                payload,
		"original_environment":   d.Environment,
		"environment":            d.Environment,
		"description":            strPtr(d.Description),
		"creator":                s.userJSON(c, d.Creator),
		"created_at":             ts(d.CreatedAt),
		"updated_at":             ts(d.UpdatedAt),
		"statuses_url":           self + "/statuses",
		"repository_url":         api,
		"transient_environment":  d.Transient,
		"production_environment": d.Production,
	}
}

func (s *Server) deploymentStatusJSON(c *call, r *repo, d *Deployment, st DeploymentStatus) map[string]any {
	api := c.api + "repos/" + r.fullName()
	dep := fmt.Sprintf("%s/deployments/%d", api, d.ID)
	return map[string]any{
		"url":             fmt.Sprintf("%s/statuses/%d", dep, st.ID),
		"id":              st.ID,
		"node_id":         nodeID("DES", st.ID),
		"state":           st.State,
		"creator":         s.userJSON(c, st.Creator),
		"description":     st.Description,
		"environment":     st.Environment,
		"target_url":      st.LogURL,
		"log_url":         st.LogURL,
		"environment_url": st.EnvironmentURL,
		"created_at":      ts(st.CreatedAt),
		"updated_at":      ts(st.CreatedAt),
		"deployment_url":  dep,
		"repository_url":  api,
	}
}
