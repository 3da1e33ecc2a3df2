//go:build tools

// Package tools pins dependencies that previewd is built on before every one
// of them is imported by code, so that go mod tidy keeps them.
package tools

import (
	_ "github.com/bradleyfalzon/ghinstallation/v2"
	_ "github.com/google/go-github/v66/github"
	_ "github.com/gregjones/httpcache"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/robfig/cron/v3"
	_ "go.uber.org/goleak"
	_ "helm.sh/helm/v4/pkg/action"
	_ "k8s.io/client-go/kubernetes"
	_ "sigs.k8s.io/yaml"
)
