package githubfake

import (
	"errors"
	"fmt"
)

// Seed describes tokens, repositories and pull requests to create at once,
// e.g. from the --seed file of cmd/github-fake:
//
//	tokens:
//	  - {token: ghp_demo, login: "previewd[bot]"}
//	repos:
//	  - name: acme/shop
//	    pulls:
//	      - {title: Add cart, branch: cart, labels: [preview]}
//	      - {title: Old, branch: old, state: merged}
type Seed struct {
	Tokens []SeedToken `json:"tokens,omitempty"`
	Repos  []SeedRepo  `json:"repos,omitempty"`
}

// SeedToken is a token to register; Login defaults to DefaultLogin and Limit
// to Options.RateLimit.
type SeedToken struct {
	Token string `json:"token"`
	Login string `json:"login,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// SeedRepo is a repository ("owner/name") and its pull requests, opened in
// order (the first gets number 1).
type SeedRepo struct {
	Name  string     `json:"name"`
	Pulls []SeedPull `json:"pulls,omitempty"`
}

// SeedPull is a pull request with its state, comments and the checks and
// statuses of its head commit.
type SeedPull struct {
	PR
	// State is open (default), closed or merged.
	State     string        `json:"state,omitempty"`
	Comments  []SeedComment `json:"comments,omitempty"`
	CheckRuns []CheckRun    `json:"check_runs,omitempty"`
	Statuses  []Status      `json:"statuses,omitempty"`
}

// SeedComment is a comment by Login ("octocat" when empty).
type SeedComment struct {
	Login string `json:"login,omitempty"`
	Body  string `json:"body"`
}

// ApplySeed creates what the seed describes. It stops at the first error;
// what was created before stays.
func (s *Server) ApplySeed(seed Seed) error {
	for _, t := range seed.Tokens {
		if t.Token == "" {
			return errors.New("seed: token without a value")
		}
		s.AddTokenAs(t.Token, t.Login, t.Limit)
	}
	for _, r := range seed.Repos {
		if _, _, ok := parseRepo(r.Name); !ok {
			return fmt.Errorf("seed: repository %q is not owner/name", r.Name)
		}
		s.AddRepo(r.Name)
		for _, p := range r.Pulls {
			n := s.OpenPR(r.Name, p.PR)
			var err error
			switch p.State {
			case "", "open":
			case "closed":
				err = s.ClosePR(r.Name, n)
			case "merged":
				err = s.MergePR(r.Name, n)
			default:
				err = fmt.Errorf("state %q is not open, closed or merged", p.State)
			}
			if err != nil {
				return fmt.Errorf("seed: %s#%d: %w", r.Name, n, err)
			}
			for _, c := range p.Comments {
				if _, err := s.AddComment(r.Name, n, c.Login, c.Body); err != nil {
					return fmt.Errorf("seed: %s#%d: %w", r.Name, n, err)
				}
			}
			sha := s.HeadSHA(r.Name, n)
			for _, cr := range p.CheckRuns {
				s.SetCheckRun(r.Name, sha, cr)
			}
			for _, st := range p.Statuses {
				s.SetStatus(r.Name, sha, st)
			}
		}
	}
	return nil
}

// HeadSHA returns the head commit of a pull request, or "" when it is unknown.
func (s *Server) HeadSHA(repo string, number int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, p, err := s.pullNamed(repo, number)
	if err != nil {
		return ""
	}
	return p.headSHA
}
