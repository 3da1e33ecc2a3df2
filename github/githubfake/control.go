package githubfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// ControlEndpoints documents the HTTP control API served under /_fake/ (not
// under the GHE prefix). Bodies and answers are JSON; durations are Go
// duration strings ("250ms") or numbers of seconds. Errors answer
// {"error": "..."} with 400, 404 (unknown repository, pull request, token) or
// 409 (impossible change).
const ControlEndpoints = `GET    /_fake/health                                          {"ok":true}
POST   /_fake/seed                                            Seed (tokens, repos, pulls)
POST   /_fake/repos                                           {"name":"owner/repo"}
POST   /_fake/repos/{owner}/{repo}/pulls                      PR → 201 {"number":N}
GET    /_fake/repos/{owner}/{repo}/pulls/{number}             the pull request as GET /pulls/{number} returns it
POST   /_fake/repos/{owner}/{repo}/pulls/{number}/push        {"sha":"..."}
POST   /_fake/repos/{owner}/{repo}/pulls/{number}/close       (also merge, reopen, delete-fork)
PUT    /_fake/repos/{owner}/{repo}/pulls/{number}/labels      {"labels":["a","b"]}
PUT    /_fake/repos/{owner}/{repo}/pulls/{number}/draft       {"draft":true}
PUT    /_fake/repos/{owner}/{repo}/pulls/{number}/title       {"title":"..."}
GET    /_fake/repos/{owner}/{repo}/pulls/{number}/comments    [Comment], oldest first
POST   /_fake/repos/{owner}/{repo}/pulls/{number}/comments    {"login":"alice","body":"..."} → 201 {"id":N}
POST   /_fake/repos/{owner}/{repo}/branches/{branch...}       {"sha":"..."} (push to any branch)
GET    /_fake/repos/{owner}/{repo}/commits/{sha}/statuses     [Status], oldest first
POST   /_fake/repos/{owner}/{repo}/commits/{sha}/statuses     Status (as a CI system posts it)
GET    /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs   [CheckRun], oldest first
PUT    /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs   CheckRun (replaces the newest run of that name)
POST   /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs   CheckRun (a re-run: a new run, the older stay) → 201 {"id":N}
DELETE /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs/{name...}  → {"removed":N}
GET    /_fake/repos/{owner}/{repo}/deployments                [Deployment] with statuses, oldest first
GET    /_fake/counters                                        Counters
POST   /_fake/counters/reset                                  zero counters and journal
GET    /_fake/requests                                        [Request], oldest first
GET    /_fake/tokens                                          [TokenInfo] with rate limits
POST   /_fake/tokens                                          {"token":"t","login":"previewd[bot]","limit":5000}
PUT    /_fake/tokens/{token}/rate                             {"remaining":0}
DELETE /_fake/tokens/{token}                                  revoke
GET    /_fake/faults                                          {"<id>": Fault}
POST   /_fake/faults                                          Fault → 201 {"id":N}
DELETE /_fake/faults                                          remove all faults and the latency
DELETE /_fake/faults/{id}                                     remove one fault
PUT    /_fake/latency                                         {"latency":"200ms"}
`

// faultJSON is the wire form of a Fault, with readable durations.
type faultJSON struct {
	Route      string       `json:"route,omitempty"`
	Repo       string       `json:"repo,omitempty"`
	Query      string       `json:"query,omitempty"`
	Body       string       `json:"body,omitempty"`
	Times      int          `json:"times,omitempty"`
	Status     int          `json:"status,omitempty"`
	RetryAfter jsonDuration `json:"retry_after,omitempty"`
	Message    string       `json:"message,omitempty"`
	Delay      jsonDuration `json:"delay,omitempty"`
	Hang       bool         `json:"hang,omitempty"`
	Drop       bool         `json:"drop,omitempty"`
}

// jsonDuration reads "1.5s" or a number of seconds, and writes "1.5s".
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = jsonDuration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want a string like \"2s\" or seconds", b)
	}
	*d = jsonDuration(secs * float64(time.Second))
	return nil
}

func (f Fault) toJSON() faultJSON {
	return faultJSON{Route: f.Route, Repo: f.Repo, Query: f.Query, Body: f.Body, Times: f.Times, Status: f.Status, RetryAfter: jsonDuration(f.RetryAfter),
		Message: f.Message, Delay: jsonDuration(f.Delay), Hang: f.Hang, Drop: f.Drop}
}

func (f faultJSON) fault() Fault {
	return Fault{Route: f.Route, Repo: f.Repo, Query: f.Query, Body: f.Body, Times: f.Times, Status: f.Status, RetryAfter: time.Duration(f.RetryAfter),
		Message: f.Message, Delay: time.Duration(f.Delay), Hang: f.Hang, Drop: f.Drop}
}

// MarshalJSON writes durations as strings ("1.5s").
func (f Fault) MarshalJSON() ([]byte, error) { return json.Marshal(f.toJSON()) }

// UnmarshalJSON reads durations as strings ("1.5s") or seconds.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = j.fault()
	return nil
}

type controlError struct {
	status int
	err    error
}

func (e *controlError) Error() string { return e.err.Error() }

func badRequest(err error) error { return &controlError{status: http.StatusBadRequest, err: err} }

func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	s.control.ServeHTTP(w, r)
}

// controlMux builds the control routes.
func (s *Server) controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(r *http.Request) (int, any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			status, v, err := h(r)
			if err != nil {
				var ce *controlError
				switch {
				case errors.As(err, &ce):
					status = ce.status
				case errors.Is(err, ErrNotFound):
					status = http.StatusNotFound
				case errors.Is(err, ErrConflict):
					status = http.StatusConflict
				default:
					status = http.StatusBadRequest
				}
				v = map[string]string{"error": err.Error()}
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(status)
			if v != nil {
				_ = json.NewEncoder(w).Encode(v)
			}
		})
	}
	repoOf := func(r *http.Request) string { return r.PathValue("owner") + "/" + r.PathValue("repo") }
	number := func(r *http.Request) (int, error) {
		n, err := strconv.Atoi(r.PathValue("number"))
		if err != nil || n < 1 {
			return 0, badRequest(fmt.Errorf("pull request number %q", r.PathValue("number")))
		}
		return n, nil
	}
	ok := map[string]bool{"ok": true}

	handle("GET /_fake/health", func(r *http.Request) (int, any, error) { return 200, ok, nil })
	handle("POST /_fake/seed", func(r *http.Request) (int, any, error) {
		var seed Seed
		if err := decodeControl(r, &seed); err != nil {
			return 0, nil, err
		}
		if err := s.ApplySeed(seed); err != nil {
			return 0, nil, badRequest(err)
		}
		return 200, ok, nil
	})
	handle("POST /_fake/repos", func(r *http.Request) (int, any, error) {
		var in struct {
			Name string `json:"name"`
		}
		if err := decodeControl(r, &in); err != nil {
			return 0, nil, err
		}
		if err := validRepo(in.Name); err != nil {
			return 0, nil, err
		}
		s.AddRepo(in.Name)
		return 201, ok, nil
	})
	handle("POST /_fake/repos/{owner}/{repo}/pulls", func(r *http.Request) (int, any, error) {
		var pr PR
		if err := decodeControl(r, &pr); err != nil {
			return 0, nil, err
		}
		return 201, map[string]int{"number": s.OpenPR(repoOf(r), pr)}, nil
	})
	handle("GET /_fake/repos/{owner}/{repo}/pulls/{number}", func(r *http.Request) (int, any, error) {
		n, err := number(r)
		if err != nil {
			return 0, nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		rp, p, err := s.pullNamed(repoOf(r), n)
		if err != nil {
			return 0, nil, err
		}
		api, web := s.baseURLs(r)
		return 200, s.pullJSON(&call{s: s, r: r, api: api, web: web, now: s.clock()}, rp, p, true), nil
	})
	handle("POST /_fake/repos/{owner}/{repo}/pulls/{number}/{action}", func(r *http.Request) (int, any, error) {
		n, err := number(r)
		if err != nil {
			return 0, nil, err
		}
		repo := repoOf(r)
		switch r.PathValue("action") {
		case "push":
			var in struct {
				SHA string `json:"sha"`
			}
			if err := decodeControl(r, &in); err != nil {
				return 0, nil, err
			}
			if in.SHA == "" {
				return 0, nil, badRequest(errors.New("push: sha is required"))
			}
			err = s.Push(repo, n, in.SHA)
		case "close":
			err = s.ClosePR(repo, n)
		case "merge":
			err = s.MergePR(repo, n)
		case "reopen":
			err = s.ReopenPR(repo, n)
		case "delete-fork":
			err = s.DeleteFork(repo, n)
		default:
			return 0, nil, &controlError{status: http.StatusNotFound, err: fmt.Errorf("unknown action %q", r.PathValue("action"))}
		}
		return 200, ok, err
	})
	handle("PUT /_fake/repos/{owner}/{repo}/pulls/{number}/{field}", func(r *http.Request) (int, any, error) {
		n, err := number(r)
		if err != nil {
			return 0, nil, err
		}
		var in struct {
			Labels []string `json:"labels"`
			Draft  bool     `json:"draft"`
			Title  string   `json:"title"`
		}
		if err := decodeControl(r, &in); err != nil {
			return 0, nil, err
		}
		repo := repoOf(r)
		switch r.PathValue("field") {
		case "labels":
			err = s.SetLabels(repo, n, in.Labels...)
		case "draft":
			err = s.SetDraft(repo, n, in.Draft)
		case "title":
			err = s.SetTitle(repo, n, in.Title)
		default:
			return 0, nil, &controlError{status: http.StatusNotFound, err: fmt.Errorf("unknown field %q", r.PathValue("field"))}
		}
		return 200, ok, err
	})
	handle("GET /_fake/repos/{owner}/{repo}/pulls/{number}/comments", func(r *http.Request) (int, any, error) {
		n, err := number(r)
		if err != nil {
			return 0, nil, err
		}
		s.mu.Lock()
		_, _, err = s.pullNamed(repoOf(r), n)
		s.mu.Unlock()
		if err != nil {
			return 0, nil, err
		}
		return 200, s.Comments(repoOf(r), n), nil
	})
	handle("POST /_fake/repos/{owner}/{repo}/pulls/{number}/comments", func(r *http.Request) (int, any, error) {
		n, err := number(r)
		if err != nil {
			return 0, nil, err
		}
		var in struct {
			Login string `json:"login"`
			Body  string `json:"body"`
		}
		if err := decodeControl(r, &in); err != nil {
			return 0, nil, err
		}
		id, err := s.AddComment(repoOf(r), n, in.Login, in.Body)
		return 201, map[string]int64{"id": id}, err
	})
	handle("POST /_fake/repos/{owner}/{repo}/branches/{branch...}", func(r *http.Request) (int, any, error) {
		var in struct {
			SHA string `json:"sha"`
		}
		if err := decodeControl(r, &in); err != nil {
			return 0, nil, err
		}
		if in.SHA == "" {
			return 0, nil, badRequest(errors.New("push: sha is required"))
		}
		s.PushBranch(repoOf(r), r.PathValue("branch"), in.SHA)
		return 200, ok, nil
	})
	handle("GET /_fake/repos/{owner}/{repo}/commits/{sha}/statuses", func(r *http.Request) (int, any, error) {
		return 200, nonNil(s.Statuses(repoOf(r), r.PathValue("sha"))), nil
	})
	handle("POST /_fake/repos/{owner}/{repo}/commits/{sha}/statuses", func(r *http.Request) (int, any, error) {
		var st Status
		if err := decodeControl(r, &st); err != nil {
			return 0, nil, err
		}
		s.SetStatus(repoOf(r), r.PathValue("sha"), st)
		return 201, ok, nil
	})
	handle("PUT /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs", func(r *http.Request) (int, any, error) {
		var cr CheckRun
		if err := decodeControl(r, &cr); err != nil {
			return 0, nil, err
		}
		if cr.Name == "" {
			return 0, nil, badRequest(errors.New("check run: name is required"))
		}
		s.SetCheckRun(repoOf(r), r.PathValue("sha"), cr)
		return 200, ok, nil
	})
	handle("GET /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs", func(r *http.Request) (int, any, error) {
		return 200, nonNil(s.CheckRuns(repoOf(r), r.PathValue("sha"))), nil
	})
	handle("POST /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs", func(r *http.Request) (int, any, error) {
		var cr CheckRun
		if err := decodeControl(r, &cr); err != nil {
			return 0, nil, err
		}
		if cr.Name == "" {
			return 0, nil, badRequest(errors.New("check run: name is required"))
		}
		return 201, map[string]int64{"id": s.AddCheckRun(repoOf(r), r.PathValue("sha"), cr)}, nil
	})
	handle("DELETE /_fake/repos/{owner}/{repo}/commits/{sha}/check-runs/{name...}", func(r *http.Request) (int, any, error) {
		return 200, map[string]int{"removed": s.RemoveCheckRuns(repoOf(r), r.PathValue("sha"), r.PathValue("name"))}, nil
	})
	handle("GET /_fake/repos/{owner}/{repo}/deployments", func(r *http.Request) (int, any, error) {
		return 200, nonNil(s.Deployments(repoOf(r))), nil
	})
	handle("GET /_fake/counters", func(r *http.Request) (int, any, error) { return 200, s.Counters(), nil })
	handle("POST /_fake/counters/reset", func(r *http.Request) (int, any, error) {
		s.ResetCounters()
		return 200, ok, nil
	})
	handle("GET /_fake/requests", func(r *http.Request) (int, any, error) { return 200, nonNil(s.Requests()), nil })
	handle("GET /_fake/tokens", func(r *http.Request) (int, any, error) { return 200, s.Tokens(), nil })
	handle("POST /_fake/tokens", func(r *http.Request) (int, any, error) {
		var in SeedToken
		if err := decodeControl(r, &in); err != nil {
			return 0, nil, err
		}
		if in.Token == "" {
			return 0, nil, badRequest(errors.New("token is required"))
		}
		s.AddTokenAs(in.Token, in.Login, in.Limit)
		return 201, ok, nil
	})
	handle("PUT /_fake/tokens/{token}/rate", func(r *http.Request) (int, any, error) {
		var in struct {
			Remaining *int `json:"remaining"`
		}
		if err := decodeControl(r, &in); err != nil {
			return 0, nil, err
		}
		if in.Remaining == nil {
			return 0, nil, badRequest(errors.New("remaining is required"))
		}
		return 200, ok, s.SetRateRemaining(r.PathValue("token"), *in.Remaining)
	})
	handle("DELETE /_fake/tokens/{token}", func(r *http.Request) (int, any, error) {
		s.RevokeToken(r.PathValue("token"))
		return 200, ok, nil
	})
	handle("GET /_fake/faults", func(r *http.Request) (int, any, error) { return 200, s.Faults(), nil })
	handle("POST /_fake/faults", func(r *http.Request) (int, any, error) {
		var f Fault
		if err := decodeControl(r, &f); err != nil {
			return 0, nil, err
		}
		return 201, map[string]FaultID{"id": s.AddFault(f)}, nil
	})
	handle("DELETE /_fake/faults", func(r *http.Request) (int, any, error) {
		s.ClearFaults()
		return 200, ok, nil
	})
	handle("DELETE /_fake/faults/{id}", func(r *http.Request) (int, any, error) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			return 0, nil, badRequest(fmt.Errorf("fault id %q", r.PathValue("id")))
		}
		s.RemoveFault(FaultID(id))
		return 200, ok, nil
	})
	handle("PUT /_fake/latency", func(r *http.Request) (int, any, error) {
		var in struct {
			Latency jsonDuration `json:"latency"`
		}
		if err := decodeControl(r, &in); err != nil {
			return 0, nil, err
		}
		s.SetLatency(time.Duration(in.Latency))
		return 200, ok, nil
	})
	return mux
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func decodeControl(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return badRequest(fmt.Errorf("reading body: %w", err))
	}
	if len(data) == 0 {
		data = []byte("{}")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return badRequest(fmt.Errorf("decoding body: %w", err))
	}
	return nil
}

func validRepo(name string) error {
	if _, _, ok := parseRepo(name); !ok {
		return badRequest(fmt.Errorf("repository %q is not owner/name", name))
	}
	return nil
}
