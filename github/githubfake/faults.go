package githubfake

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault changes how the server answers the requests it matches; see the
// package documentation for the semantics.
type Fault struct {
	// Route is a route template (a Route* constant), the same without its
	// method (matching every method), or "*" or "" for every API request.
	Route string `json:"route,omitempty"`
	// Repo, when set ("owner/name", any case), limits the fault to requests
	// for that repository.
	Repo string `json:"repo,omitempty"`
	// Query, when set, limits the fault to requests whose raw query
	// contains it ("page=2": the second page of a list only).
	Query string `json:"query,omitempty"`
	// Body, when set, is sent as it is (not JSON-encoded) with Status, or
	// 200 when Status is 0: a malformed answer.
	Body string `json:"body,omitempty"`
	// Times is how many requests the fault answers; 0 means all of them until
	// it is removed.
	Times int `json:"times,omitempty"`
	// Status is the status to answer with: 429, or 403 without a Message,
	// answer a secondary rate limit error; 403 with a Message is a plain
	// refusal (an archived repository: "Repository was archived so is
	// read-only."); others a JSON error with the status text. 0 answers
	// the request normally (after Delay).
	Status int `json:"status,omitempty"`
	// RetryAfter is sent as Retry-After (whole seconds, rounded up) when > 0.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// Message replaces the default error message.
	Message string `json:"message,omitempty"`
	// Delay is waited before answering.
	Delay time.Duration `json:"delay,omitempty"`
	// Hang never answers: the request blocks until the client gives up or the
	// server is closed.
	Hang bool `json:"hang,omitempty"`
	// Drop closes the connection without answering. Go's http.Transport
	// retries an idempotent request once when a reused connection drops, so
	// give Times >= 2 (or 0) for the client to see the error.
	Drop bool `json:"drop,omitempty"`
}

// FaultID identifies an added fault.
type FaultID int

type faultEntry struct {
	id   FaultID
	f    Fault
	left int // uses left; <0: unlimited
}

func (f Fault) matches(route, repo string) bool {
	switch {
	case f.Route == "" || f.Route == "*":
	case f.Route == route:
	default:
		_, path, _ := strings.Cut(route, " ")
		if f.Route != path {
			return false
		}
	}
	return f.Repo == "" || strings.EqualFold(f.Repo, repo)
}

// AddFault adds a fault after the existing ones.
func (s *Server) AddFault(f Fault) FaultID {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultSeq++
	left := f.Times
	if left <= 0 {
		left = -1
	}
	s.faults = append(s.faults, &faultEntry{id: s.faultSeq, f: f, left: left})
	return s.faultSeq
}

// RemoveFault removes a fault; removing an unknown or used-up one is a no-op.
func (s *Server) RemoveFault(id FaultID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.faults {
		if e.id == id {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
			return
		}
	}
}

// ClearFaults removes every fault and the latency set by SetLatency.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.latency = 0
}

// FailNext makes the next n requests to route (a template, or "*") answer
// status, with Retry-After when retryAfter > 0. 429 and 403 answer GitHub's
// secondary rate limit error.
func (s *Server) FailNext(route string, n, status int, retryAfter time.Duration) FaultID {
	return s.AddFault(Fault{Route: route, Times: max(n, 1), Status: status, RetryAfter: retryAfter})
}

// HangNext makes the next n requests to route never answer (until the
// client gives up or the server is closed).
func (s *Server) HangNext(route string, n int) FaultID {
	return s.AddFault(Fault{Route: route, Times: max(n, 1), Hang: true})
}

// SetLatency delays every API request by d (0 removes the delay).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = max(d, 0)
}

// Faults lists the active faults with their ids.
func (s *Server) Faults() map[FaultID]Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[FaultID]Fault, len(s.faults))
	for _, e := range s.faults {
		f := e.f
		if e.left > 0 {
			f.Times = e.left
		}
		m[e.id] = f
	}
	return m
}

// takeFault returns the first fault matching the request and uses it up
// once. s.mu must be held.
func (s *Server) takeFault(route, repo, query string) *Fault {
	for i, e := range s.faults {
		if !e.f.matches(route, repo) || (e.f.Query != "" && !strings.Contains(query, e.f.Query)) {
			continue
		}
		if e.left > 0 {
			e.left--
			if e.left == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		f := e.f
		return &f
	}
	return nil
}

// faultResponse builds the answer of a status fault. It is not charged, but
// carries the rate limit headers of a known token. s.mu must be held.
func (s *Server) faultResponse(r *http.Request, m matched, f *Fault) *out {
	now := s.clock()
	o := &out{status: f.Status, header: http.Header{}}
	s.commonHeaders(o.header)
	if f.Body != "" {
		if o.status == 0 {
			o.status = http.StatusOK
		}
		o.body = []byte(f.Body)
		o.header.Set("Content-Type", "application/json; charset=utf-8")
		s.record(Request{Time: now, Method: r.Method, Path: r.URL.Path, Route: m.name(), Repo: m.repo, Status: o.status, Fault: true})
		return o
	}
	msg, doc := f.Message, "https://docs.github.com/rest"
	if f.Status == http.StatusTooManyRequests || (f.Status == http.StatusForbidden && msg == "") {
		if msg == "" {
			msg = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID " + o.header.Get("X-GitHub-Request-Id") + "."
		}
		doc = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
	} else if msg == "" {
		msg = http.StatusText(f.Status)
		if f.Status == http.StatusInternalServerError {
			msg = "Server Error"
		}
	}
	o.body, _ = json.Marshal(apiError{Message: msg, DocumentationURL: doc, Status: fmt.Sprint(f.Status)})
	o.header.Set("Content-Type", "application/json; charset=utf-8")
	if f.RetryAfter > 0 {
		o.header.Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
	}
	rec := Request{Time: now, Method: r.Method, Path: r.URL.Path, Route: m.name(), Repo: m.repo, Status: f.Status, Fault: true}
	if t, _ := s.authenticate(r.Header.Get("Authorization"), now); t != nil {
		t.bucket.refresh(now)
		t.bucket.headers(o.header)
		rec.Token, rec.Login = t.value, t.login
	}
	s.record(rec)
	return o
}

func (s *Server) recordUnanswered(r *http.Request, m matched) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	rec := Request{Time: now, Method: r.Method, Path: r.URL.Path, Route: m.name(), Repo: m.repo, Fault: true}
	if t, _ := s.authenticate(r.Header.Get("Authorization"), now); t != nil {
		rec.Token, rec.Login = t.value, t.login
	}
	s.record(rec)
}
