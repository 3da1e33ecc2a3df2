package githubfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/previewd/previewd/github/ghlimits"
)

const maxDescription = 140

func (c *call) intParam(name string) (int64, bool) {
	v, err := strconv.ParseInt(c.params[name], 10, 64)
	return v, err == nil && v > 0
}

// decode reads a JSON request body; the reply is GitHub's 400 when it fails.
func (c *call) decode(v any) (reply, bool) {
	data, err := io.ReadAll(io.LimitReader(c.r.Body, 16<<20))
	if err == nil && len(strings.TrimSpace(string(data))) == 0 {
		data = []byte("{}")
	}
	if err != nil || json.Unmarshal(data, v) != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON", "https://docs.github.com/rest"), false
	}
	return reply{}, true
}

// paginate picks the page the request asks for out of n items (per_page
// defaults to perDefault, at most 100) and returns the index range and the
// Link header GitHub would send.
func (c *call) paginate(n, perDefault int) (start, end int, h http.Header) {
	q := c.r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per < 1 {
		per = perDefault
	}
	per = min(per, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	last := max((n+per-1)/per, 1)
	start = min((page-1)*per, n)
	end = min(start+per, n)
	h = http.Header{}
	if n <= per && page == 1 {
		return start, end, h
	}
	base := c.linkBase()
	q.Del("page")
	link := func(p int, rel string) string {
		qs := q.Encode()
		if qs != "" {
			qs += "&"
		}
		return fmt.Sprintf(`<%s?%spage=%d>; rel="%s"`, base, qs, p, rel)
	}
	var links []string
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"))
	}
	h.Set("Link", strings.Join(links, ", "))
	return start, end, h
}

// linkBase is the absolute URL of the list without its query. Repository
// lists are linked as /repositories/{id}/..., as GitHub does.
func (c *call) linkBase() string {
	p := c.r.URL.EscapedPath()
	if c.s.opts.GHEPrefix {
		p = strings.TrimPrefix(p, gheAPIPrefix)
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if c.repo != nil && len(segs) >= 3 && segs[0] == "repos" {
		segs = append([]string{"repositories", strconv.FormatInt(c.repo.id, 10)}, segs[3:]...)
	}
	return c.api + strings.Join(segs, "/")
}

func (s *Server) getRepo(c *call) reply {
	return reply{status: http.StatusOK, body: s.repoJSON(c, c.repo)}
}

func (s *Server) listPulls(c *call) reply {
	const doc = "https://docs.github.com/rest/pulls/pulls#list-pull-requests"
	q := c.r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "open"
	}
	sortBy := q.Get("sort")
	if sortBy == "" {
		sortBy = "created"
	}
	dir := q.Get("direction")
	if dir == "" {
		dir = "asc"
		if sortBy == "created" {
			dir = "desc"
		}
	}
	var invalid []validationError
	if !slices.Contains([]string{"open", "closed", "all"}, state) {
		invalid = append(invalid, validationError{Resource: "PullRequest", Code: "invalid", Field: "state"})
	}
	if !slices.Contains([]string{"created", "updated", "popularity", "long-running"}, sortBy) {
		invalid = append(invalid, validationError{Resource: "PullRequest", Code: "invalid", Field: "sort"})
	}
	if dir != "asc" && dir != "desc" {
		invalid = append(invalid, validationError{Resource: "PullRequest", Code: "invalid", Field: "direction"})
	}
	if len(invalid) > 0 {
		return validationFailed(doc, invalid...)
	}
	headFilter, baseFilter := q.Get("head"), q.Get("base")

	var list []*pull
	for _, p := range c.repo.pulls {
		if state != "all" && p.state != state {
			continue
		}
		if baseFilter != "" && p.baseRef != baseFilter {
			continue
		}
		if headFilter != "" {
			user, ref, ok := strings.Cut(headFilter, ":")
			if !ok || !strings.EqualFold(user, p.headOwner) || ref != p.headRef {
				continue
			}
		}
		list = append(list, p)
	}
	less := func(a, b *pull) bool {
		if sortBy == "updated" && !a.updatedAt.Equal(b.updatedAt) {
			return a.updatedAt.Before(b.updatedAt)
		}
		return a.number < b.number // creation order
	}
	sort.Slice(list, func(i, j int) bool {
		if dir == "desc" {
			return less(list[j], list[i])
		}
		return less(list[i], list[j])
	})
	start, end, h := c.paginate(len(list), 30)
	items := make([]*pullJSON, 0, end-start)
	for _, p := range list[start:end] {
		items = append(items, s.pullJSON(c, c.repo, p, false))
	}
	return reply{status: http.StatusOK, body: items, header: h}
}

func (s *Server) pullParam(c *call) *pull {
	n, ok := c.intParam("number")
	if !ok {
		return nil
	}
	return c.repo.pulls[int(n)]
}

func (s *Server) getPull(c *call) reply {
	p := s.pullParam(c)
	if p == nil {
		return notFound()
	}
	return reply{status: http.StatusOK, body: s.pullJSON(c, c.repo, p, true)}
}

func (s *Server) listIssueComments(c *call) reply {
	p := s.pullParam(c)
	if p == nil {
		return notFound()
	}
	var since time.Time
	if v := c.r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return validationFailed("https://docs.github.com/rest/issues/comments#list-issue-comments",
				validationError{Resource: "IssueComment", Code: "invalid", Field: "since"})
		}
		since = t
	}
	var list []*comment
	for _, id := range p.comments {
		if cm := c.repo.comments[id]; !cm.updatedAt.Before(since) {
			list = append(list, cm)
		}
	}
	start, end, h := c.paginate(len(list), 30)
	items := make([]commentJSON, 0, end-start)
	for _, cm := range list[start:end] {
		items = append(items, s.commentJSON(c, c.repo, cm))
	}
	return reply{status: http.StatusOK, body: items, header: h}
}

// commentBody validates the body of a comment create or edit.
func (c *call) commentBody(doc string) (string, reply, bool) {
	var in struct {
		Body *string `json:"body"`
	}
	if rep, ok := c.decode(&in); !ok {
		return "", rep, false
	}
	if in.Body == nil || strings.TrimSpace(*in.Body) == "" {
		return "", validationFailed(doc, validationError{Resource: "IssueComment", Code: "missing_field", Field: "body"}), false
	}
	if utf8.RuneCountInString(*in.Body) > ghlimits.MaxCommentLength {
		return "", validationFailed(doc, validationError{
			Resource: "IssueComment", Code: "custom", Field: "body",
			Message: fmt.Sprintf("body is too long (maximum is %d characters)", ghlimits.MaxCommentLength),
		}), false
	}
	return *in.Body, reply{}, true
}

func (s *Server) createIssueComment(c *call) reply {
	p := s.pullParam(c)
	if p == nil {
		return notFound()
	}
	body, rep, ok := c.commentBody("https://docs.github.com/rest/issues/comments#create-an-issue-comment")
	if !ok {
		return rep
	}
	cm := s.addComment(c.repo, p, c.tok.login, c.tok.installation != 0, body)
	j := s.commentJSON(c, c.repo, cm)
	return reply{status: http.StatusCreated, body: j, header: http.Header{"Location": {j.URL}}}
}

func (s *Server) commentParam(c *call) *comment {
	id, ok := c.intParam("comment_id")
	if !ok {
		return nil
	}
	return c.repo.comments[id]
}

func (s *Server) getIssueComment(c *call) reply {
	cm := s.commentParam(c)
	if cm == nil {
		return notFound()
	}
	return reply{status: http.StatusOK, body: s.commentJSON(c, c.repo, cm)}
}

func (s *Server) editIssueComment(c *call) reply {
	cm := s.commentParam(c)
	if cm == nil {
		return notFound()
	}
	body, rep, ok := c.commentBody("https://docs.github.com/rest/issues/comments#update-an-issue-comment")
	if !ok {
		return rep
	}
	cm.body = body
	cm.updatedAt = later(cm.updatedAt, c.now)
	s.touch(c.repo)
	return reply{status: http.StatusOK, body: s.commentJSON(c, c.repo, cm)}
}

func (s *Server) deleteIssueComment(c *call) reply {
	cm := s.commentParam(c)
	if cm == nil {
		return notFound()
	}
	delete(c.repo.comments, cm.id)
	if p := c.repo.pulls[cm.issue]; p != nil {
		p.comments = slices.DeleteFunc(p.comments, func(id int64) bool { return id == cm.id })
	}
	s.touch(c.repo)
	return reply{status: http.StatusNoContent}
}

func noCommit(status int, ref string) reply {
	return errReply(status, "No commit found for SHA: "+ref, "https://docs.github.com/rest/commits/statuses")
}

func (s *Server) createStatus(c *call) reply {
	const doc = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
	sha, ok := c.repo.resolveRef(c.params["sha"])
	if !ok {
		return noCommit(http.StatusUnprocessableEntity, c.params["sha"])
	}
	var in struct {
		State       string `json:"state"`
		TargetURL   string `json:"target_url"`
		Description string `json:"description"`
		Context     string `json:"context"`
	}
	if rep, ok := c.decode(&in); !ok {
		return rep
	}
	if !slices.Contains([]string{"error", "failure", "pending", "success"}, in.State) {
		return validationFailed(doc, validationError{Resource: "Status", Code: "custom", Field: "state", Message: "state is not included in the list"})
	}
	if utf8.RuneCountInString(in.Description) > maxDescription {
		return validationFailed(doc, validationError{Resource: "Status", Code: "custom", Field: "description",
			Message: fmt.Sprintf("description is too long (maximum is %d characters)", maxDescription)})
	}
	st := s.addStatus(c.repo, sha, Status{State: in.State, Context: in.Context, Description: in.Description, TargetURL: in.TargetURL, Creator: c.tok.login})
	return reply{status: http.StatusCreated, body: s.statusJSON(c, c.repo, sha, st)}
}

// latestStatuses returns the newest status of each context, in the order the
// contexts first appeared.
func latestStatuses(all []Status) []Status {
	var out []Status
	for _, st := range all {
		if i := slices.IndexFunc(out, func(x Status) bool { return x.Context == st.Context }); i >= 0 {
			out[i] = st
		} else {
			out = append(out, st)
		}
	}
	return out
}

// combinedState is GitHub's rule: failure if any context errored or failed,
// pending if there is none or any is pending, success otherwise.
func combinedState(latest []Status) string {
	state := "success"
	if len(latest) == 0 {
		state = "pending"
	}
	for _, st := range latest {
		switch st.State {
		case "error", "failure":
			return "failure"
		case "pending":
			state = "pending"
		}
	}
	return state
}

func (s *Server) getCombinedStatus(c *call) reply {
	sha, ok := c.repo.resolveRef(c.params["ref"])
	if !ok {
		return noCommit(http.StatusNotFound, c.params["ref"])
	}
	latest := latestStatuses(c.repo.statuses[sha])
	start, end, h := c.paginate(len(latest), 100)
	items := make([]statusJSON, 0, end-start)
	for _, st := range latest[start:end] {
		items = append(items, s.statusJSON(c, c.repo, sha, st))
	}
	api := c.api + "repos/" + c.repo.fullName()
	return reply{status: http.StatusOK, header: h, body: map[string]any{
		"state":       combinedState(latest),
		"statuses":    items,
		"sha":         sha,
		"total_count": len(latest),
		"repository":  s.simpleRepoJSON(c, c.repo),
		"commit_url":  api + "/commits/" + sha,
		"url":         api + "/commits/" + sha + "/status",
	}}
}

func (s *Server) listCheckRuns(c *call) reply {
	sha, ok := c.repo.resolveRef(c.params["ref"])
	if !ok {
		return noCommit(http.StatusNotFound, c.params["ref"])
	}
	q := c.r.URL.Query()
	var runs []CheckRun
	for _, cr := range c.repo.checks[sha] {
		if name := q.Get("check_name"); name != "" && cr.Name != name {
			continue
		}
		if st := q.Get("status"); st != "" && cr.Status != st {
			continue
		}
		runs = append(runs, cr)
	}
	start, end, h := c.paginate(len(runs), 30)
	items := make([]map[string]any, 0, end-start)
	for _, cr := range runs[start:end] {
		items = append(items, s.checkRunJSON(c, c.repo, sha, cr))
	}
	return reply{status: http.StatusOK, header: h, body: map[string]any{"total_count": len(runs), "check_runs": items}}
}

// contextStates returns the state of every commit status context and check
// run on sha, as deployments verify them.
func contextStates(r *repo, sha string) map[string]string {
	states := map[string]string{}
	for _, st := range latestStatuses(r.statuses[sha]) {
		states[st.Context] = st.State
	}
	for _, cr := range r.checks[sha] {
		switch {
		case cr.Status != "completed":
			states[cr.Name] = "pending"
		case slices.Contains([]string{"success", "neutral", "skipped"}, cr.Conclusion):
			states[cr.Name] = "success"
		default:
			states[cr.Name] = "failure"
		}
	}
	return states
}

func (s *Server) createDeployment(c *call) reply {
	const doc = "https://docs.github.com/rest/deployments/deployments#create-a-deployment"
	var in struct {
		Ref                   string          `json:"ref"`
		Task                  *string         `json:"task"`
		AutoMerge             *bool           `json:"auto_merge"`
		RequiredContexts      *[]string       `json:"required_contexts"`
		Payload               json.RawMessage `json:"payload"`
		Environment           *string         `json:"environment"`
		Description           *string         `json:"description"`
		TransientEnvironment  *bool           `json:"transient_environment"`
		ProductionEnvironment *bool           `json:"production_environment"`
	}
	if rep, ok := c.decode(&in); !ok {
		return rep
	}
	if in.Ref == "" {
		return validationFailed(doc, validationError{Resource: "Deployment", Code: "missing_field", Field: "ref"})
	}
	sha, ok := c.repo.resolveRef(in.Ref)
	if !ok {
		return errReply(http.StatusUnprocessableEntity, "No ref found for: "+in.Ref, doc)
	}
	// Omitted required_contexts means every context must be successful; an
	// empty list skips the check.
	states := contextStates(c.repo, sha)
	var required []string
	if in.RequiredContexts == nil {
		for ctx := range states {
			required = append(required, ctx)
		}
		sort.Strings(required)
	} else {
		required = *in.RequiredContexts
	}
	var failed []map[string]string
	for _, ctx := range required {
		state, ok := states[ctx]
		if !ok {
			state = "missing"
		}
		if state != "success" {
			failed = append(failed, map[string]string{"context": ctx, "state": state})
		}
	}
	if len(failed) > 0 {
		return reply{status: http.StatusConflict, body: apiError{
			Message:          fmt.Sprintf("Conflict: Commit status checks failed for %s.", in.Ref),
			Errors:           []any{map[string]any{"contexts": failed, "resource": "Deployment", "field": "required_contexts"}},
			DocumentationURL: doc,
			Status:           "409",
		}}
	}
	d := &Deployment{
		ID:          8000000 + s.nextID("deployment"),
		Ref:         in.Ref,
		SHA:         sha,
		Task:        "deploy",
		Environment: "production",
		Creator:     c.tok.login,
		CreatedAt:   c.now.Truncate(time.Second),
		UpdatedAt:   c.now.Truncate(time.Second),
		Statuses:    []DeploymentStatus{},
	}
	if in.Task != nil && *in.Task != "" {
		d.Task = *in.Task
	}
	if in.Environment != nil && *in.Environment != "" {
		d.Environment = *in.Environment
	}
	if in.Description != nil {
		d.Description = *in.Description
	}
	if len(in.Payload) > 0 && string(in.Payload) != "null" {
		d.Payload = in.Payload
	}
	if in.TransientEnvironment != nil {
		d.Transient = *in.TransientEnvironment
	}
	d.Production = d.Environment == "production"
	if in.ProductionEnvironment != nil {
		d.Production = *in.ProductionEnvironment
	}
	c.repo.deployments = append(c.repo.deployments, d)
	s.touch(c.repo)
	return reply{status: http.StatusCreated, body: s.deploymentJSON(c, c.repo, d)}
}

func (s *Server) listDeployments(c *call) reply {
	q := c.r.URL.Query()
	var list []*Deployment
	for i := len(c.repo.deployments) - 1; i >= 0; i-- {
		d := c.repo.deployments[i]
		if v := q.Get("sha"); v != "" && d.SHA != v {
			continue
		}
		if v := q.Get("ref"); v != "" && d.Ref != v {
			continue
		}
		if v := q.Get("task"); v != "" && d.Task != v {
			continue
		}
		if v := q.Get("environment"); v != "" && d.Environment != v {
			continue
		}
		list = append(list, d)
	}
	start, end, h := c.paginate(len(list), 30)
	items := make([]map[string]any, 0, end-start)
	for _, d := range list[start:end] {
		items = append(items, s.deploymentJSON(c, c.repo, d))
	}
	return reply{status: http.StatusOK, body: items, header: h}
}

func (s *Server) deploymentParam(c *call) *Deployment {
	id, ok := c.intParam("deployment_id")
	if !ok {
		return nil
	}
	for _, d := range c.repo.deployments {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (s *Server) getDeployment(c *call) reply {
	d := s.deploymentParam(c)
	if d == nil {
		return notFound()
	}
	return reply{status: http.StatusOK, body: s.deploymentJSON(c, c.repo, d)}
}

func (s *Server) createDeploymentStatus(c *call) reply {
	const doc = "https://docs.github.com/rest/deployments/statuses#create-a-deployment-status"
	d := s.deploymentParam(c)
	if d == nil {
		return notFound()
	}
	var in struct {
		State          string `json:"state"`
		TargetURL      string `json:"target_url"`
		LogURL         string `json:"log_url"`
		Description    string `json:"description"`
		Environment    string `json:"environment"`
		EnvironmentURL string `json:"environment_url"`
		AutoInactive   *bool  `json:"auto_inactive"`
	}
	if rep, ok := c.decode(&in); !ok {
		return rep
	}
	if !slices.Contains([]string{"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}, in.State) {
		return validationFailed(doc, validationError{Resource: "DeploymentStatus", Code: "custom", Field: "state", Message: "state is not included in the list"})
	}
	if utf8.RuneCountInString(in.Description) > maxDescription {
		return validationFailed(doc, validationError{Resource: "DeploymentStatus", Code: "custom", Field: "description",
			Message: fmt.Sprintf("description is too long (maximum is %d characters)", maxDescription)})
	}
	if in.EnvironmentURL != "" {
		if u, err := url.Parse(in.EnvironmentURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return validationFailed(doc, validationError{Resource: "DeploymentStatus", Code: "custom", Field: "environment_url", Message: "environment_url must use http(s) scheme"})
		}
	}
	if in.Environment != "" {
		d.Environment = in.Environment
	}
	logURL := in.LogURL
	if logURL == "" {
		logURL = in.TargetURL
	}
	now := c.now.Truncate(time.Second)
	st := DeploymentStatus{
		ID:             9500000 + s.nextID("deployment_status"),
		State:          in.State,
		Description:    in.Description,
		Environment:    d.Environment,
		EnvironmentURL: in.EnvironmentURL,
		LogURL:         logURL,
		Creator:        c.tok.login,
		CreatedAt:      now,
	}
	d.Statuses = append(d.Statuses, st)
	d.UpdatedAt = now
	// auto_inactive (default true): a success marks the earlier
	// non-production, non-transient deployments of the environment inactive.
	if in.State == "success" && (in.AutoInactive == nil || *in.AutoInactive) {
		for _, other := range c.repo.deployments {
			if other.ID >= d.ID || other.Environment != d.Environment || other.Production || other.Transient || len(other.Statuses) == 0 {
				continue
			}
			if other.Statuses[len(other.Statuses)-1].State == "inactive" {
				continue
			}
			other.Statuses = append(other.Statuses, DeploymentStatus{
				ID: 9500000 + s.nextID("deployment_status"), State: "inactive", Environment: other.Environment,
				Creator: c.tok.login, CreatedAt: now,
			})
			other.UpdatedAt = now
		}
	}
	s.touch(c.repo)
	return reply{status: http.StatusCreated, body: s.deploymentStatusJSON(c, c.repo, d, st)}
}

func (s *Server) listDeploymentStatuses(c *call) reply {
	d := s.deploymentParam(c)
	if d == nil {
		return notFound()
	}
	n := len(d.Statuses)
	start, end, h := c.paginate(n, 30)
	items := make([]map[string]any, 0, end-start)
	for i := start; i < end; i++ {
		items = append(items, s.deploymentStatusJSON(c, c.repo, d, d.Statuses[n-1-i]))
	}
	return reply{status: http.StatusOK, body: items, header: h}
}
