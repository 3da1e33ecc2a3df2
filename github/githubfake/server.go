package githubfake

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Route templates of the API routes the fake serves. Counters and faults name
// routes by these strings.
const (
	RouteRateLimit               = "GET /rate_limit"
	RouteGetUser                 = "GET /user"
	RouteCreateInstallationToken = "POST /app/installations/{installation_id}/access_tokens"
	RouteGetRepoInstallation     = "GET /repos/{owner}/{repo}/installation"
	RouteGetRepo                 = "GET /repos/{owner}/{repo}"
	RouteListPulls               = "GET /repos/{owner}/{repo}/pulls"
	RouteGetPull                 = "GET /repos/{owner}/{repo}/pulls/{number}"
	RouteListIssueComments       = "GET /repos/{owner}/{repo}/issues/{number}/comments"
	RouteCreateIssueComment      = "POST /repos/{owner}/{repo}/issues/{number}/comments"
	RouteGetIssueComment         = "GET /repos/{owner}/{repo}/issues/comments/{comment_id}"
	RouteEditIssueComment        = "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"
	RouteDeleteIssueComment      = "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}"
	RouteCreateStatus            = "POST /repos/{owner}/{repo}/statuses/{sha}"
	RouteGetCombinedStatus       = "GET /repos/{owner}/{repo}/commits/{ref}/status"
	RouteListCheckRuns           = "GET /repos/{owner}/{repo}/commits/{ref}/check-runs"
	RouteListDeployments         = "GET /repos/{owner}/{repo}/deployments"
	RouteCreateDeployment        = "POST /repos/{owner}/{repo}/deployments"
	RouteGetDeployment           = "GET /repos/{owner}/{repo}/deployments/{deployment_id}"
	RouteListDeploymentStatuses  = "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses"
	RouteCreateDeploymentStatus  = "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses"
	// RouteGetTarball answers 302 with the archive's address (under
	// /_codeload/, as GitHub's codeload.github.com, with a short-lived
	// token in the query); the download itself is not an API request.
	RouteGetTarball = "GET /repos/{owner}/{repo}/tarball/{ref}"
	// RouteUnknown names requests that matched no route (answered 404).
	RouteUnknown = "unknown"
)

// DefaultRateLimit is the primary rate limit of a token or installation per
// hour unless configured otherwise.
const DefaultRateLimit = 5000

const gheAPIPrefix = "/api/v3"

// Options configures a Server. The zero value serves github.com-style routes
// at the root with the default rate limit and no GitHub App.
type Options struct {
	// GHEPrefix serves the API under /api/v3/ as GitHub Enterprise Server does.
	GHEPrefix bool
	// RateLimit is the hourly primary limit of tokens added without one;
	// DefaultRateLimit when 0.
	RateLimit int
	// App enables the GitHub App endpoints (JWT → installation token).
	App *App
	// Now is the clock; time.Now when nil. JWTs are checked against it too.
	Now func() time.Time
	// Logger receives one Debug record per API request; nothing is logged when
	// nil. Tokens are never logged.
	Logger *slog.Logger
	// JournalSize bounds how many requests Requests returns (the newest);
	// 10,000 when 0, none when negative.
	JournalSize int
}

// App configures the GitHub App whose JWTs the fake accepts.
type App struct {
	// ID is the App id, expected in the JWT "iss" claim (number or string).
	ID int64
	// ClientID, when set, is accepted as "iss" too (GitHub allows either).
	ClientID string
	// Slug names the bot: comments by installation tokens are by "<slug>[bot]".
	// "previewd" when empty.
	Slug string
	// PublicKey verifies the RS256 JWT signatures.
	PublicKey *rsa.PublicKey
	// Installations maps installation id → account login (the owner of the
	// repositories it covers). When empty, any installation id is accepted and
	// every repository reports installation 1.
	Installations map[int64]string
	// TokenTTL is how long installation tokens live; one hour when 0.
	TokenTTL time.Duration
	// RateLimit is each installation's hourly limit; Options.RateLimit or
	// DefaultRateLimit when 0 (GitHub Enterprise Cloud grants 15,000).
	RateLimit int
}

// Server is the fake. It is an http.Handler and safe for concurrent use.
type Server struct {
	opts    Options
	now     func() time.Time
	log     *slog.Logger
	routes  []*route
	control *http.ServeMux
	closed  chan struct{}
	closeMu sync.Once
	started time.Time

	mu      sync.Mutex
	url     string
	ts      *httptest.Server
	tokens  map[string]*token
	buckets map[string]*bucket
	userIDs map[string]int64
	repos   map[string]*repo // by lower-case full name
	// movedFrom are the repositories renamed or transferred away from a
	// name (lower case), which GitHub redirects to the repository's id.
	movedFrom map[string]*repo
	reposByID map[int64]*repo
	seq       map[string]int64
	faults    []*faultEntry
	faultSeq  FaultID
	latency   time.Duration
	counters  counterSet
	journal   []Request
	// archives are the addresses handed out by GET .../tarball, by token.
	archives map[string]archiveGrant
	// Downloads counts archives served, by "owner/name@sha".
	downloads map[string]int
	reqSeq    int64
}

// New returns a Server with no tokens and no repositories. Serve it with any
// http.Server, or use NewTestServer.
func New(opts Options) *Server {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = DefaultRateLimit
	}
	if opts.JournalSize == 0 {
		opts.JournalSize = 10000
	}
	if opts.App != nil {
		app := *opts.App
		if app.Slug == "" {
			app.Slug = "previewd"
		}
		if app.TokenTTL <= 0 {
			app.TokenTTL = time.Hour
		}
		if app.RateLimit <= 0 {
			app.RateLimit = opts.RateLimit
		}
		opts.App = &app
	}
	s := &Server{
		opts:      opts,
		now:       now,
		log:       log,
		closed:    make(chan struct{}),
		tokens:    map[string]*token{},
		buckets:   map[string]*bucket{},
		userIDs:   map[string]int64{},
		repos:     map[string]*repo{},
		movedFrom: map[string]*repo{},
		reposByID: map[int64]*repo{},
		seq:       map[string]int64{},
		counters:  newCounterSet(),
		archives:  map[string]archiveGrant{},
		downloads: map[string]int{},
	}
	s.started = s.clock()
	s.routes = s.buildRoutes()
	s.control = s.controlMux()
	return s
}

// NewTestServer starts a Server on a loopback httptest server and closes it
// when the test ends.
func NewTestServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := New(opts)
	ts := httptest.NewServer(s)
	s.mu.Lock()
	s.ts = ts
	s.url = ts.URL + "/"
	s.mu.Unlock()
	tb.Cleanup(s.Close)
	return s
}

// URL is the root URL of a server started by NewTestServer, ending in "/".
// The control endpoints live under URL()+"_fake/".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// APIURL is the API base URL ending in "/", ready for go-github's BaseURL:
// URL() itself, or URL()+"api/v3/" with Options.GHEPrefix.
func (s *Server) APIURL() string {
	u := s.URL()
	if s.opts.GHEPrefix && u != "" {
		return u + strings.TrimPrefix(gheAPIPrefix, "/") + "/"
	}
	return u
}

// Close releases hanging requests and, for a server started by
// NewTestServer, shuts it down. It is safe to call more than once.
func (s *Server) Close() {
	s.closeMu.Do(func() { close(s.closed) })
	s.mu.Lock()
	ts := s.ts
	s.ts = nil
	s.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
}

func (s *Server) clock() time.Time { return s.now().UTC() }

// ServeHTTP serves the API and, under /_fake/, the control endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_fake" || strings.HasPrefix(r.URL.Path, "/_fake/") {
		s.serveControl(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, codeloadPrefix) {
		s.serveCodeload(w, r)
		return
	}
	s.serveAPI(w, r)
}

type authKind int

const (
	authToken    authKind = iota // a known token is required
	authOptional                 // a token is optional (GET /rate_limit)
	authJWT                      // a GitHub App JWT is required
)

type handlerFunc func(c *call) reply

type route struct {
	tmpl   string
	method string
	segs   []string
	auth   authKind
	h      handlerFunc
	// charge is false for routes GitHub never charges (GET /rate_limit).
	charge bool
}

func (s *Server) buildRoutes() []*route {
	defs := []struct {
		tmpl   string
		auth   authKind
		h      handlerFunc
		charge bool
	}{
		{RouteRateLimit, authOptional, s.getRateLimit, false},
		{RouteGetUser, authToken, s.getUser, true},
		{RouteCreateInstallationToken, authJWT, s.createInstallationToken, false},
		{RouteGetRepoInstallation, authJWT, s.getRepoInstallation, false},
		{RouteGetRepo, authToken, s.getRepo, true},
		{RouteListPulls, authToken, s.listPulls, true},
		{RouteGetPull, authToken, s.getPull, true},
		// issues/comments/{id} before issues/{number}/comments: the path
		// /issues/comments/comments would match both.
		{RouteGetIssueComment, authToken, s.getIssueComment, true},
		{RouteEditIssueComment, authToken, s.editIssueComment, true},
		{RouteDeleteIssueComment, authToken, s.deleteIssueComment, true},
		{RouteListIssueComments, authToken, s.listIssueComments, true},
		{RouteCreateIssueComment, authToken, s.createIssueComment, true},
		{RouteCreateStatus, authToken, s.createStatus, true},
		{RouteGetCombinedStatus, authToken, s.getCombinedStatus, true},
		{RouteListCheckRuns, authToken, s.listCheckRuns, true},
		{RouteListDeployments, authToken, s.listDeployments, true},
		{RouteCreateDeployment, authToken, s.createDeployment, true},
		{RouteGetDeployment, authToken, s.getDeployment, true},
		{RouteListDeploymentStatuses, authToken, s.listDeploymentStatuses, true},
		{RouteCreateDeploymentStatus, authToken, s.createDeploymentStatus, true},
		{RouteGetTarball, authToken, s.getTarball, true},
	}
	routes := make([]*route, 0, len(defs))
	for _, d := range defs {
		method, path, _ := strings.Cut(d.tmpl, " ")
		routes = append(routes, &route{
			tmpl:   d.tmpl,
			method: method,
			segs:   strings.Split(strings.TrimPrefix(path, "/"), "/"),
			auth:   d.auth,
			h:      d.h,
			charge: d.charge,
		})
	}
	return routes
}

// match matches path segments against the route. The {ref} parameter takes
// one or more segments (branch names contain slashes).
func (rt *route) match(method string, segs []string) (map[string]string, bool) {
	if method != rt.method {
		return nil, false
	}
	greedy := -1
	for i, p := range rt.segs {
		if p == "{ref}" {
			greedy = i
		}
	}
	if greedy < 0 && len(segs) != len(rt.segs) || len(segs) < len(rt.segs) {
		return nil, false
	}
	params := map[string]string{}
	one := func(p, v string) bool {
		if strings.HasPrefix(p, "{") {
			if v == "" {
				return false
			}
			params[strings.Trim(p, "{}")] = v
			return true
		}
		return p == v
	}
	if greedy < 0 {
		for i, p := range rt.segs {
			if !one(p, segs[i]) {
				return nil, false
			}
		}
		return params, true
	}
	for i := 0; i < greedy; i++ {
		if !one(rt.segs[i], segs[i]) {
			return nil, false
		}
	}
	tail := len(rt.segs) - greedy - 1
	for i := 0; i < tail; i++ {
		if !one(rt.segs[greedy+1+i], segs[len(segs)-tail+i]) {
			return nil, false
		}
	}
	mid := segs[greedy : len(segs)-tail]
	for _, m := range mid {
		if m == "" {
			return nil, false
		}
	}
	params["ref"] = strings.Join(mid, "/")
	return params, true
}

// matched is the outcome of routing one request.
type matched struct {
	route  *route // nil: no route
	params map[string]string
	repo   string // "owner/name" from the path, or ""
}

func (m matched) name() string {
	if m.route == nil {
		return RouteUnknown
	}
	return m.route.tmpl
}

// match routes a request; s.mu must be held (the /repositories/{id} alias
// looks the repository up).
func (s *Server) match(r *http.Request) matched {
	p := r.URL.EscapedPath()
	if s.opts.GHEPrefix {
		if p != gheAPIPrefix && !strings.HasPrefix(p, gheAPIPrefix+"/") {
			return matched{}
		}
		p = strings.TrimPrefix(p, gheAPIPrefix)
	}
	raw := strings.Split(strings.TrimPrefix(p, "/"), "/")
	segs := make([]string, len(raw))
	for i, r := range raw {
		v, err := url.PathUnescape(r)
		if err != nil {
			return matched{}
		}
		segs[i] = v
	}
	if len(segs) >= 2 && segs[0] == "repositories" {
		var id int64
		if _, err := fmt.Sscan(segs[1], &id); err != nil {
			return matched{}
		}
		rp := s.reposByID[id]
		if rp == nil {
			return matched{}
		}
		segs = append([]string{"repos", rp.owner, rp.name}, segs[2:]...)
	}
	for _, rt := range s.routes {
		if params, ok := rt.match(r.Method, segs); ok {
			m := matched{route: rt, params: params}
			if params["owner"] != "" && params["repo"] != "" {
				m.repo = params["owner"] + "/" + params["repo"]
			}
			return m
		}
	}
	return matched{}
}

// call is one API request being handled, with s.mu held.
type call struct {
	s      *Server
	r      *http.Request
	route  *route
	params map[string]string
	tok    *token // nil on JWT routes and unauthenticated GET /rate_limit
	repo   *repo  // set when the route has {owner}/{repo}
	now    time.Time
	api    string // API base URL ending in "/"
	web    string // web base URL ending in "/"
}

// reply is what a handler answers; the pipeline adds the common headers.
type reply struct {
	status int
	body   any // JSON-encoded unless nil
	header http.Header
	// lastModified is sent as Last-Modified on 200 GETs; the repository's
	// last change when zero.
	lastModified time.Time
	// noCache marks a GET whose answer must not be cached (GET /rate_limit).
	noCache bool
}

// out is a fully built response, written after s.mu is released.
type out struct {
	status int
	header http.Header
	body   []byte
}

func (o *out) write(w http.ResponseWriter) {
	for k, v := range o.header {
		w.Header()[k] = v
	}
	w.WriteHeader(o.status)
	if len(o.body) > 0 {
		_, _ = w.Write(o.body)
	}
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m := s.match(r)
	f := s.takeFault(m.name(), m.repo, r.URL.RawQuery)
	latency := s.latency
	s.mu.Unlock()

	delay := latency
	if f != nil {
		delay += f.Delay
	}
	if !s.wait(r, delay) {
		s.recordUnanswered(r, m)
		panic(http.ErrAbortHandler) // no answer: the client left or the server closed
	}
	if f != nil {
		switch {
		case f.Hang:
			s.wait(r, -1)
			s.recordUnanswered(r, m)
			panic(http.ErrAbortHandler)
		case f.Drop:
			s.recordUnanswered(r, m)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		case f.Status != 0 || f.Body != "":
			s.mu.Lock()
			o := s.faultResponse(r, m, f)
			s.mu.Unlock()
			o.write(w)
			return
		}
	}
	s.mu.Lock()
	o := s.handle(r, m)
	s.mu.Unlock()
	o.write(w)
}

// wait sleeps d (forever when negative) unless the client goes away or the
// server is closed first; it reports whether the request should go on.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d == 0 {
		return true
	}
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closed:
		return false
	}
}

// baseURLs derives the API and web base URLs from the request, so that links
// point back at whatever address the client used.
func (s *Server) baseURLs(r *http.Request) (api, web string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	web = scheme + "://" + r.Host + "/"
	api = web
	if s.opts.GHEPrefix {
		api = web + strings.TrimPrefix(gheAPIPrefix, "/") + "/"
	}
	return api, web
}

func (s *Server) commonHeaders(h http.Header) {
	s.reqSeq++
	h.Set("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Api-Version-Selected", "2022-11-28")
	h.Set("X-GitHub-Request-Id", fmt.Sprintf("FAKE:%08X", s.reqSeq))
}

// handle authenticates, charges, runs the handler and applies conditional
// request semantics. s.mu must be held.
func (s *Server) handle(r *http.Request, m matched) *out {
	now := s.clock()
	o := &out{header: http.Header{}}
	s.commonHeaders(o.header)
	rec := Request{Time: now, Method: r.Method, Path: r.URL.Path, Route: m.name(), Repo: m.repo}
	defer func() {
		rec.Status = o.status
		s.record(rec)
	}()

	auth := authToken
	if m.route != nil {
		auth = m.route.auth
	}
	authz := r.Header.Get("Authorization")
	var tok *token
	switch auth {
	case authJWT:
		if msg := s.verifyAppJWT(authz, now); msg != "" {
			s.errorOut(o, http.StatusUnauthorized, msg, "https://docs.github.com/rest")
			return o
		}
	case authToken, authOptional:
		var msg string
		tok, msg = s.authenticate(authz, now)
		if tok == nil && !(auth == authOptional && authz == "") {
			s.errorOut(o, http.StatusUnauthorized, msg, "https://docs.github.com/rest")
			return o
		}
	}
	if tok != nil {
		rec.Token, rec.Login = tok.value, tok.login
	}

	var b *bucket
	if tok != nil {
		b = tok.bucket
		b.refresh(now)
		if m.route == nil || m.route.charge {
			if b.used >= b.limit {
				s.errorOut(o, http.StatusForbidden,
					fmt.Sprintf("API rate limit exceeded for %s. If you reach out to GitHub Support for help, please include the request ID %s.", b.subject, o.header.Get("X-GitHub-Request-Id")),
					"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit")
				b.headers(o.header)
				return o
			}
			b.used++
			rec.Charged = true
		}
	}

	if m.route == nil {
		s.errorOut(o, http.StatusNotFound, "Not Found", "https://docs.github.com/rest")
		if b != nil {
			b.headers(o.header)
		}
		return o
	}

	api, web := s.baseURLs(r)
	c := &call{s: s, r: r, route: m.route, params: m.params, tok: tok, now: now, api: api, web: web}
	var rep reply
	if m.repo != "" {
		c.repo = s.repoNamed(m.repo)
	}
	if m.repo != "" && c.repo == nil {
		rep = notFound()
		if moved := s.movedFrom[strings.ToLower(m.repo)]; moved != nil {
			rep = movedReply(r, c, m.repo, moved)
		}
	} else {
		rep = m.route.h(c)
	}

	o.status = rep.status
	for k, v := range rep.header {
		o.header[k] = v
	}
	if rep.body != nil {
		body, err := json.Marshal(rep.body)
		if err != nil {
			panic(fmt.Sprintf("githubfake: encoding %s: %v", m.name(), err))
		}
		o.body = body
		o.header.Set("Content-Type", "application/json; charset=utf-8")
	}

	if r.Method == http.MethodGet && o.status == http.StatusOK {
		if rep.noCache {
			o.header.Set("Cache-Control", "no-cache")
		} else {
			s.conditional(r, o, rep, c, &rec, b)
		}
	}
	if b != nil {
		b.headers(o.header)
	}
	return o
}

// conditional adds the validators of a 200 GET and turns it into a 304 when
// the client already has it. A 304 is not charged.
func (s *Server) conditional(r *http.Request, o *out, rep reply, c *call, rec *Request, b *bucket) {
	sum := sha256.New()
	sum.Write([]byte(r.Header.Get("Authorization")))
	sum.Write([]byte{0})
	sum.Write(o.body)
	etag := `"` + hex.EncodeToString(sum.Sum(nil))[:40] + `"`
	lm := rep.lastModified
	if lm.IsZero() {
		lm = s.started
		if c.repo != nil {
			lm = c.repo.modified
		}
	}
	o.header.Set("ETag", etag)
	o.header.Set("Last-Modified", lm.UTC().Format(http.TimeFormat))
	o.header.Set("Cache-Control", "private, max-age=60, s-maxage=60")

	notModified := false
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		notModified = etagMatches(inm, etag)
	} else if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil {
			notModified = !lm.Truncate(time.Second).After(t)
		}
	}
	if !notModified {
		return
	}
	o.status = http.StatusNotModified
	o.body = nil
	o.header.Del("Content-Type")
	rec.NotModified = true
	if rec.Charged && b != nil {
		b.used--
		rec.Charged = false
	}
}

// etagMatches implements the weak comparison of If-None-Match.
func etagMatches(header, etag string) bool {
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}

// apiError is GitHub's error body.
type apiError struct {
	Message          string `json:"message"`
	Errors           []any  `json:"errors,omitempty"`
	DocumentationURL string `json:"documentation_url,omitempty"`
	Status           string `json:"status,omitempty"`
}

func (s *Server) errorOut(o *out, status int, msg, doc string) {
	o.status = status
	o.body, _ = json.Marshal(apiError{Message: msg, DocumentationURL: doc, Status: fmt.Sprint(status)})
	o.header.Set("Content-Type", "application/json; charset=utf-8")
}

func errReply(status int, msg, doc string) reply {
	return reply{status: status, body: apiError{Message: msg, DocumentationURL: doc, Status: fmt.Sprint(status)}}
}

func notFound() reply {
	return errReply(http.StatusNotFound, "Not Found", "https://docs.github.com/rest")
}

// validationError is one entry of a 422's "errors".
type validationError struct {
	Resource string `json:"resource"`
	Code     string `json:"code"`
	Field    string `json:"field"`
	Message  string `json:"message,omitempty"`
}

func validationFailed(doc string, errs ...validationError) reply {
	list := make([]any, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return reply{status: http.StatusUnprocessableEntity, body: apiError{
		Message: "Validation Failed", Errors: list, DocumentationURL: doc, Status: "422",
	}}
}

// movedReply is GitHub's answer for a repository renamed or transferred
// away from name: 301 for GET, 307 for other methods (which a client
// repeats with the same method and body), to the same path under
// /repositories/{id}.
func movedReply(r *http.Request, c *call, name string, to *repo) reply {
	p := r.URL.EscapedPath()
	i := strings.Index(strings.ToLower(p), "/repos/"+strings.ToLower(name))
	rest := ""
	if i >= 0 {
		rest = p[i+len("/repos/")+len(name):]
	}
	loc := fmt.Sprintf("%srepositories/%d%s", c.api, to.id, rest)
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	status := http.StatusMovedPermanently
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		status = http.StatusTemporaryRedirect
	}
	rep := errReply(status, "Moved Permanently", "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects")
	rep.header = http.Header{"Location": {loc}}
	return rep
}
