package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// restGetter gives Helm (genericclioptions.RESTClientGetter) clients built
// from a *rest.Config instead of a kubeconfig file, with namespace as the
// default namespace.
type restGetter struct {
	config    *rest.Config
	namespace string

	once   sync.Once
	disc   discovery.CachedDiscoveryInterface
	mapper meta.RESTMapper
	err    error
}

func newRESTGetter(config *rest.Config, namespace string) *restGetter {
	return &restGetter{config: config, namespace: namespace}
}

func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.config), nil }

func (g *restGetter) init() {
	g.once.Do(func() {
		dc, err := discovery.NewDiscoveryClientForConfig(rest.CopyConfig(g.config))
		if err != nil {
			g.err = fmt.Errorf("creating discovery client: %w", err)
			return
		}
		g.disc = memory.NewMemCacheClient(dc)
		g.mapper = restmapper.NewDeferredDiscoveryRESTMapper(g.disc)
	})
}

func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	g.init()
	return g.disc, g.err
}

func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) {
	g.init()
	return g.mapper, g.err
}

func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig { return clientConfig{g} }

// clientConfig answers kubectl's factory with the getter's config and
// namespace; there is no kubeconfig file behind it.
type clientConfig struct{ g *restGetter }

func (c clientConfig) RawConfig() (clientcmdapi.Config, error) { return clientcmdapi.Config{}, nil }
func (c clientConfig) ClientConfig() (*rest.Config, error)     { return c.g.ToRESTConfig() }
func (c clientConfig) Namespace() (string, bool, error)        { return c.g.namespace, true, nil }
func (c clientConfig) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}

// bindContext makes every request through the wrapped transport end when
// ctx ends; a request started after that fails at once.
func bindContext(ctx context.Context) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper { return &ctxTransport{ctx: ctx, next: next} }
}

type ctxTransport struct {
	ctx  context.Context
	next http.RoundTripper
}

func (t *ctxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.ctx.Err() != nil {
		return nil, fmt.Errorf("operation ended: %w", context.Cause(t.ctx))
	}
	rctx, cancel := context.WithCancelCause(req.Context())
	stop := context.AfterFunc(t.ctx, func() { cancel(context.Cause(t.ctx)) })
	resp, err := t.next.RoundTrip(req.WithContext(rctx))
	if err != nil {
		stop()
		cancel(nil)
		return nil, err
	}
	resp.Body = &ctxBody{ReadCloser: resp.Body, release: func() { stop(); cancel(nil) }}
	return resp, nil
}

// WrappedRoundTripper lets client-go see through the wrapper.
func (t *ctxTransport) WrappedRoundTripper() http.RoundTripper { return t.next }

type ctxBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *ctxBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
