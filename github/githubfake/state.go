package githubfake

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors of the control methods; test them with errors.Is.
var (
	// ErrNotFound: the repository, pull request, token or comment is unknown.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change is not possible in the current state (merging a
	// closed pull request, reopening a merged one, ...).
	ErrConflict = errors.New("conflict")
)

// PR describes a pull request to open.
type PR struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
	// Branch is the head branch; "pr-<number>" when empty.
	Branch string `json:"branch,omitempty"`
	// Base is the base branch; the default branch "main" when empty.
	Base string `json:"base,omitempty"`
	// SHA is the head commit; a made-up one when empty.
	SHA string `json:"sha,omitempty"`
	// Author is the login of the user who opened it; "octocat" when empty.
	Author string   `json:"author,omitempty"`
	Labels []string `json:"labels,omitempty"`
	Draft  bool     `json:"draft,omitempty"`
	// FromFork opens it from the fork "<Author>/<repo name>".
	FromFork bool `json:"from_fork,omitempty"`
	// ForkDeleted opens it from a fork that was then deleted: head.repo is
	// null. It implies FromFork.
	ForkDeleted bool `json:"fork_deleted,omitempty"`
}

// Comment is an issue comment as a human reading the pull request sees it.
type Comment struct {
	ID        int64     `json:"id"`
	Login     string    `json:"login"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Status is a commit status.
type Status struct {
	ID int64 `json:"id,omitempty"`
	// State is error, failure, pending or success.
	State string `json:"state"`
	// Context is "default" when empty.
	Context     string `json:"context,omitempty"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
	// Creator is the login that posted it.
	Creator   string    `json:"creator,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// CheckRun is a check run on a commit.
type CheckRun struct {
	ID   int64  `json:"id,omitempty"`
	Name string `json:"name"`
	// Status is queued, in_progress or completed; completed when empty and
	// Conclusion is set, queued otherwise.
	Status string `json:"status,omitempty"`
	// Conclusion (success, failure, neutral, cancelled, skipped, timed_out,
	// action_required) is set when completed.
	Conclusion  string    `json:"conclusion,omitempty"`
	DetailsURL  string    `json:"details_url,omitempty"`
	Title       string    `json:"title,omitempty"`
	Summary     string    `json:"summary,omitempty"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// Deployment is a GitHub deployment with its statuses, oldest first.
type Deployment struct {
	ID          int64              `json:"id"`
	Ref         string             `json:"ref"`
	SHA         string             `json:"sha"`
	Task        string             `json:"task"`
	Environment string             `json:"environment"`
	Description string             `json:"description,omitempty"`
	Payload     json.RawMessage    `json:"payload,omitempty"`
	Creator     string             `json:"creator"`
	Transient   bool               `json:"transient_environment"`
	Production  bool               `json:"production_environment"`
	CreatedAt   time.Time          `json:"created_at"`
	UpdatedAt   time.Time          `json:"updated_at"`
	Statuses    []DeploymentStatus `json:"statuses"`
}

// DeploymentStatus is one status of a deployment.
type DeploymentStatus struct {
	ID             int64     `json:"id"`
	State          string    `json:"state"`
	Description    string    `json:"description,omitempty"`
	Environment    string    `json:"environment"`
	EnvironmentURL string    `json:"environment_url,omitempty"`
	LogURL         string    `json:"log_url,omitempty"`
	Creator        string    `json:"creator"`
	CreatedAt      time.Time `json:"created_at"`
}

type repo struct {
	id            int64
	owner, name   string
	fork          bool
	defaultBranch string
	branches      map[string]string // branch → sha
	commits       map[string]bool   // every sha known in the repository
	createdAt     time.Time
	updatedAt     time.Time
	pushedAt      time.Time
	modified      time.Time // last change of anything in it (Last-Modified)
	nextNumber    int
	pulls         map[int]*pull
	comments      map[int64]*comment
	statuses      map[string][]Status   // sha → oldest first
	checks        map[string][]CheckRun // sha → oldest first; re-runs repeat a name
	deployments   []*Deployment         // oldest first
	labelIDs      map[string]int64
	files         map[string]map[string][]byte // sha → path → contents
}

func (r *repo) fullName() string { return r.owner + "/" + r.name }

type pull struct {
	id        int64
	number    int
	title     string
	body      string
	author    string
	labels    []string
	draft     bool
	state     string // open, closed
	merged    bool
	headRef   string
	headSHA   string
	headOwner string
	headRepo  *repo // nil when the fork was deleted
	fromFork  bool
	baseRef   string
	createdAt time.Time
	updatedAt time.Time
	closedAt  time.Time
	mergedAt  time.Time
	mergeSHA  string
	mergedBy  string
	comments  []int64 // comment ids, ascending
}

type comment struct {
	id        int64
	issue     int
	login     string
	app       bool // posted with an installation token
	body      string
	createdAt time.Time
	updatedAt time.Time
}

// later returns a time after prev: now (to the second) unless that is not
// after prev, then prev plus a second. Values that clients compare (pushed_at,
// updated_at, Last-Modified) therefore change on every change.
func later(prev, now time.Time) time.Time {
	now = now.UTC().Truncate(time.Second)
	if !now.After(prev) {
		return prev.Add(time.Second)
	}
	return now
}

func fakeSHA(parts ...any) string {
	sum := sha1.Sum([]byte(fmt.Sprint(parts...)))
	return hex.EncodeToString(sum[:])
}

func (s *Server) nextID(kind string) int64 {
	s.seq[kind]++
	return s.seq[kind]
}

func (s *Server) userID(login string) int64 {
	key := strings.ToLower(login)
	id, ok := s.userIDs[key]
	if !ok {
		id = int64(len(s.userIDs) + 1)
		s.userIDs[key] = id
	}
	return id
}

func parseRepo(full string) (owner, name string, ok bool) {
	owner, name, ok = strings.Cut(full, "/")
	return owner, name, ok && owner != "" && name != "" && !strings.Contains(name, "/")
}

func splitRepo(full string) (owner, name string) {
	owner, name, ok := parseRepo(full)
	if !ok {
		panic(fmt.Sprintf("githubfake: repository %q is not owner/name", full))
	}
	return owner, name
}

// repoNamed finds a repository; s.mu must be held.
func (s *Server) repoNamed(full string) *repo {
	return s.repos[strings.ToLower(full)]
}

// ensureRepo finds or creates a repository; s.mu must be held.
func (s *Server) ensureRepo(full string) *repo {
	owner, name := splitRepo(full)
	if r := s.repoNamed(full); r != nil {
		return r
	}
	now := s.clock().Truncate(time.Second)
	r := &repo{
		id:            100000 + s.nextID("repo"),
		owner:         owner,
		name:          name,
		defaultBranch: "main",
		branches:      map[string]string{},
		commits:       map[string]bool{},
		createdAt:     now,
		updatedAt:     now,
		pushedAt:      now,
		modified:      now,
		pulls:         map[int]*pull{},
		comments:      map[int64]*comment{},
		statuses:      map[string][]Status{},
		checks:        map[string][]CheckRun{},
		labelIDs:      map[string]int64{},
	}
	sha := fakeSHA(r.fullName(), "main")
	r.branches["main"] = sha
	r.commits[sha] = true
	s.repos[strings.ToLower(full)] = r
	s.reposByID[r.id] = r
	s.userID(owner)
	return r
}

// touch records a change in the repository (Last-Modified).
func (s *Server) touch(r *repo) {
	r.modified = later(r.modified, s.clock())
}

// pushed records a push to the repository: pushed_at moves, and with it the
// base.repo embedded in every pull request of the repository.
func (s *Server) pushed(r *repo, branch, sha string) {
	r.branches[branch] = sha
	r.commits[sha] = true
	r.pushedAt = later(r.pushedAt, s.clock())
	s.touch(r)
}

func (s *Server) pullNamed(full string, number int) (*repo, *pull, error) {
	r := s.repoNamed(full)
	if r == nil {
		return nil, nil, fmt.Errorf("repository %s: %w", full, ErrNotFound)
	}
	p := r.pulls[number]
	if p == nil {
		return nil, nil, fmt.Errorf("pull request %s#%d: %w", full, number, ErrNotFound)
	}
	return r, p, nil
}

// AddRepo creates the repository "owner/name" (with a "main" branch) unless
// it exists. It panics if repo is not owner/name.
func (s *Server) AddRepo(repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ensureRepo(repo)
}

// OpenPR opens a pull request in repo ("owner/name", created if needed) and
// returns its number. It panics if repo is not owner/name.
func (s *Server) OpenPR(repo string, pr PR) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ensureRepo(repo)
	now := s.clock().Truncate(time.Second)
	r.nextNumber++
	n := r.nextNumber
	p := &pull{
		id:        1000000 + s.nextID("pull"),
		number:    n,
		title:     pr.Title,
		body:      pr.Body,
		author:    pr.Author,
		labels:    dedupe(pr.Labels),
		draft:     pr.Draft,
		state:     "open",
		headRef:   pr.Branch,
		headSHA:   pr.SHA,
		baseRef:   pr.Base,
		createdAt: now,
		updatedAt: now,
	}
	if p.title == "" {
		p.title = fmt.Sprintf("Pull request %d", n)
	}
	if p.author == "" {
		p.author = "octocat"
	}
	if p.headRef == "" {
		p.headRef = fmt.Sprintf("pr-%d", n)
	}
	if p.headSHA == "" {
		p.headSHA = fakeSHA(r.fullName(), n, p.headRef, now)
	}
	if p.baseRef == "" {
		p.baseRef = r.defaultBranch
	}
	if _, ok := r.branches[p.baseRef]; !ok {
		sha := fakeSHA(r.fullName(), p.baseRef)
		r.branches[p.baseRef] = sha
		r.commits[sha] = true
	}
	s.userID(p.author)
	p.headOwner = r.owner
	p.headRepo = r
	if pr.FromFork || pr.ForkDeleted {
		p.fromFork = true
		p.headOwner = p.author
		p.headRepo = nil
		if !pr.ForkDeleted {
			forkName := p.author + "/" + r.name
			if strings.EqualFold(p.author, r.owner) {
				forkName += "-fork"
			}
			fork := s.ensureRepo(forkName)
			fork.fork = true
			s.pushed(fork, p.headRef, p.headSHA)
			p.headRepo = fork
		}
		r.commits[p.headSHA] = true // reachable as refs/pull/n/head
		s.touch(r)
	} else {
		s.pushed(r, p.headRef, p.headSHA)
	}
	r.pulls[n] = p
	return n
}

func dedupe(labels []string) []string {
	var out []string
	for _, l := range labels {
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// Push moves the head of an open pull request to sha. A push to a branch of
// the repository moves its pushed_at, so every pulls page changes.
func (s *Server) Push(repo string, number int, sha string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return err
	}
	if p.state != "open" {
		return fmt.Errorf("pushing to %s#%d: pull request is closed: %w", repo, number, ErrConflict)
	}
	p.headSHA = sha
	p.updatedAt = later(p.updatedAt, s.clock())
	r.commits[sha] = true
	if p.headRepo != nil {
		s.pushed(p.headRepo, p.headRef, sha)
	}
	s.touch(r)
	return nil
}

// PushBranch pushes sha to a branch of repo (created if needed) that need not
// belong to a pull request, e.g. the default branch. Open pull requests whose
// head is that branch of that repository move with it.
func (s *Server) PushBranch(repo, branch, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ensureRepo(repo)
	s.pushed(r, branch, sha)
	for _, base := range s.repos {
		for _, p := range base.pulls {
			if p.state == "open" && p.headRepo == r && p.headRef == branch {
				p.headSHA = sha
				p.updatedAt = later(p.updatedAt, s.clock())
				base.commits[sha] = true
				s.touch(base)
			}
		}
	}
}

// editPull changes a pull request as a user would: the change moves its
// updated_at and the repository's Last-Modified, like GitHub's.
func (s *Server) editPull(repo string, number int, edit func(p *pull)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return err
	}
	edit(p)
	p.updatedAt = later(p.updatedAt, s.clock())
	s.touch(r)
	return nil
}

// SetLabels replaces the labels of a pull request.
func (s *Server) SetLabels(repo string, number int, labels ...string) error {
	return s.editPull(repo, number, func(p *pull) { p.labels = dedupe(labels) })
}

// SetDraft marks a pull request as draft or ready for review.
func (s *Server) SetDraft(repo string, number int, draft bool) error {
	return s.editPull(repo, number, func(p *pull) { p.draft = draft })
}

// SetTitle changes the title of a pull request.
func (s *Server) SetTitle(repo string, number int, title string) error {
	return s.editPull(repo, number, func(p *pull) { p.title = title })
}

// ClosePR closes a pull request without merging it; closing a closed one is a
// no-op.
func (s *Server) ClosePR(repo string, number int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return err
	}
	if p.state == "closed" {
		return nil
	}
	now := later(p.updatedAt, s.clock())
	p.state, p.closedAt, p.updatedAt = "closed", now, now
	s.touch(r)
	return nil
}

// MergePR merges an open, non-draft pull request: it is closed with merged_at
// set, and the merge commit is pushed to the base branch.
func (s *Server) MergePR(repo string, number int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return err
	}
	if p.state != "open" {
		return fmt.Errorf("merging %s#%d: pull request is closed: %w", repo, number, ErrConflict)
	}
	if p.draft {
		return fmt.Errorf("merging %s#%d: pull request is still a draft: %w", repo, number, ErrConflict)
	}
	now := later(p.updatedAt, s.clock())
	p.state, p.merged = "closed", true
	p.closedAt, p.mergedAt, p.updatedAt = now, now, now
	p.mergeSHA = fakeSHA(r.fullName(), "merge", p.number, p.headSHA)
	p.mergedBy = r.owner
	s.pushed(r, p.baseRef, p.mergeSHA)
	return nil
}

// ReopenPR reopens a closed, unmerged pull request whose head repository
// still exists.
func (s *Server) ReopenPR(repo string, number int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return err
	}
	switch {
	case p.state == "open":
		return nil
	case p.merged:
		return fmt.Errorf("reopening %s#%d: pull request is merged: %w", repo, number, ErrConflict)
	case p.headRepo == nil:
		return fmt.Errorf("reopening %s#%d: head repository was deleted: %w", repo, number, ErrConflict)
	}
	p.state, p.closedAt = "open", time.Time{}
	p.updatedAt = later(p.updatedAt, s.clock())
	s.touch(r)
	return nil
}

// DeleteFork deletes the fork a pull request comes from: head.repo becomes
// null in every pull request from that fork.
func (s *Server) DeleteFork(repo string, number int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return err
	}
	if !p.fromFork {
		return fmt.Errorf("deleting the fork of %s#%d: not from a fork: %w", repo, number, ErrConflict)
	}
	fork := p.headRepo
	if fork == nil {
		return nil
	}
	for _, q := range r.pulls {
		if q.headRepo == fork {
			q.headRepo = nil
		}
	}
	delete(s.repos, strings.ToLower(fork.fullName()))
	delete(s.reposByID, fork.id)
	s.touch(r)
	return nil
}

// AddComment adds an issue comment by login (a human, or another bot) to a
// pull request and returns its id.
func (s *Server) AddComment(repo string, number int, login, body string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return 0, err
	}
	if login == "" {
		login = "octocat"
	}
	return s.addComment(r, p, login, false, body).id, nil
}

func (s *Server) addComment(r *repo, p *pull, login string, app bool, body string) *comment {
	now := s.clock().Truncate(time.Second)
	c := &comment{id: 5000000 + s.nextID("comment"), issue: p.number, login: login, app: app, body: body, createdAt: now, updatedAt: now}
	s.userID(login)
	r.comments[c.id] = c
	p.comments = append(p.comments, c.id)
	p.updatedAt = later(p.updatedAt, s.clock())
	s.touch(r)
	return c
}

// Comments returns the comments of a pull request, oldest first, as a human
// reading it sees them.
func (s *Server) Comments(repo string, number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, p, err := s.pullNamed(repo, number)
	if err != nil {
		return nil
	}
	list := make([]Comment, 0, len(p.comments))
	for _, id := range p.comments {
		c := r.comments[id]
		list = append(list, Comment{ID: c.id, Login: c.login, Body: c.body, CreatedAt: c.createdAt, UpdatedAt: c.updatedAt})
	}
	return list
}

// resolveRef resolves a branch name, a full sha or an unambiguous sha prefix
// (at least 7 characters) to a known commit. s.mu must be held.
func (r *repo) resolveRef(ref string) (string, bool) {
	ref = strings.TrimPrefix(strings.TrimPrefix(ref, "refs/"), "heads/")
	if sha, ok := r.branches[ref]; ok {
		return sha, true
	}
	if r.commits[ref] {
		return ref, true
	}
	if len(ref) < 7 {
		return "", false
	}
	found := ""
	for sha := range r.commits {
		if strings.HasPrefix(sha, ref) {
			if found != "" {
				return "", false
			}
			found = sha
		}
	}
	return found, found != ""
}

// SetStatus adds a commit status to sha, as a CI system would. The commit
// becomes known to the repository (created if needed).
func (s *Server) SetStatus(repo, sha string, st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ensureRepo(repo)
	r.commits[sha] = true
	if st.Creator == "" {
		st.Creator = "ci-bot"
	}
	s.addStatus(r, sha, st)
}

func (s *Server) addStatus(r *repo, sha string, st Status) Status {
	st.ID = 7000000 + s.nextID("status")
	if st.Context == "" {
		st.Context = "default"
	}
	st.CreatedAt = s.clock().Truncate(time.Second)
	s.userID(st.Creator)
	r.statuses[sha] = append(r.statuses[sha], st)
	s.touch(r)
	return st
}

// Statuses returns every status posted to sha in repo, oldest first.
func (s *Server) Statuses(repo, sha string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoNamed(repo)
	if r == nil {
		return nil
	}
	return slices.Clone(r.statuses[sha])
}

// SetCheckRun creates a check run on sha, or replaces the newest one of that
// name (keeping its id), as a CI system updates a run it reported. The commit
// becomes known to the repository (created if needed).
func (s *Server) SetCheckRun(repo, sha string, cr CheckRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ensureRepo(repo)
	r.commits[sha] = true
	s.normalizeCheckRun(&cr)
	runs := r.checks[sha]
	i := len(runs) - 1
	for i >= 0 && runs[i].Name != cr.Name {
		i--
	}
	if i < 0 {
		cr.ID = 9000000 + s.nextID("check")
		r.checks[sha] = append(runs, cr)
	} else {
		cr.ID = runs[i].ID
		runs[i] = cr
	}
	s.touch(r)
}

// AddCheckRun adds a new check run on sha and returns its id, keeping the
// runs of that name already there: a re-run, or a workflow triggered again on
// the same commit by another event. Every run is its own check suite in the
// fake, so the list keeps showing the older runs next to the new one, as
// GitHub does across check suites even with filter=latest. The commit becomes
// known to the repository (created if needed).
func (s *Server) AddCheckRun(repo, sha string, cr CheckRun) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ensureRepo(repo)
	r.commits[sha] = true
	s.normalizeCheckRun(&cr)
	cr.ID = 9000000 + s.nextID("check")
	r.checks[sha] = append(r.checks[sha], cr)
	s.touch(r)
	return cr.ID
}

// RemoveCheckRuns removes every check run named name from sha (as when the
// check suite is deleted with its workflow run) and returns how many there
// were.
func (s *Server) RemoveCheckRuns(repo, sha, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoNamed(repo)
	if r == nil {
		return 0
	}
	before := len(r.checks[sha])
	r.checks[sha] = slices.DeleteFunc(r.checks[sha], func(x CheckRun) bool { return x.Name == name })
	removed := before - len(r.checks[sha])
	if removed > 0 {
		s.touch(r)
	}
	return removed
}

// CheckRuns returns every check run on sha in repo, oldest first.
func (s *Server) CheckRuns(repo, sha string) []CheckRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoNamed(repo)
	if r == nil {
		return nil
	}
	return slices.Clone(r.checks[sha])
}

// normalizeCheckRun fills in the status and the timestamps. s.mu must be
// held.
func (s *Server) normalizeCheckRun(cr *CheckRun) {
	now := s.clock().Truncate(time.Second)
	if cr.Status == "" {
		cr.Status = "queued"
		if cr.Conclusion != "" {
			cr.Status = "completed"
		}
	}
	if cr.StartedAt.IsZero() {
		cr.StartedAt = now
	}
	if cr.Status == "completed" && cr.CompletedAt.IsZero() {
		cr.CompletedAt = now
	}
}

// Deployments returns the deployments of repo with their statuses, oldest
// first.
func (s *Server) Deployments(repo string) []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoNamed(repo)
	if r == nil {
		return nil
	}
	list := make([]Deployment, len(r.deployments))
	for i, d := range r.deployments {
		list[i] = *d
		list[i].Statuses = slices.Clone(d.Statuses)
		list[i].Payload = slices.Clone(d.Payload)
	}
	return list
}

// RenameRepo renames (or transfers, when the owner changes) a repository,
// as GitHub does: its id, pull requests and comments stay; requests for
// the old name are redirected to /repositories/{id}.
func (s *Server) RenameRepo(old, new string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoNamed(old)
	if r == nil {
		return fmt.Errorf("githubfake: no repository %s", old)
	}
	owner, name, ok := parseRepo(new)
	if !ok {
		return fmt.Errorf("githubfake: %q is not owner/name", new)
	}
	if s.repoNamed(new) != nil {
		return fmt.Errorf("githubfake: repository %s exists", new)
	}
	delete(s.repos, strings.ToLower(old))
	r.owner, r.name = owner, name
	s.repos[strings.ToLower(new)] = r
	s.movedFrom[strings.ToLower(old)] = r
	s.userID(owner)
	s.touch(r)
	return nil
}
