package nodeagent

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ensureToken mints (or renews) a token for the pod's service account,
// bound to the pod, with the TokenRequest API, and writes it with a
// kubeconfig that reads it from its file (client-go re-reads the file, so a
// renewed token is picked up by a running process). A pod with
// automountServiceAccountToken: false gets neither.
func (r *podRunner) ensureToken(ctx context.Context) error {
	if r.noToken || (r.tokenPath != "" && time.Now().Before(r.tokenRefreshAt)) {
		return nil
	}
	if am := r.pod.Spec.AutomountServiceAccountToken; am != nil && !*am {
		r.noToken = true
		return nil
	}
	sa := r.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(r.a.opts.TokenExpiration / time.Second)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: r.name, UID: r.uid},
	}}
	tr, err := r.a.client.CoreV1().ServiceAccounts(r.namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting a token for service account %s/%s: %w", r.namespace, sa, err)
	}
	tokenPath := filepath.Join(r.dir, "token")
	tmp := tokenPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(tr.Status.Token), 0o600); err != nil {
		return fmt.Errorf("writing the token: %w", err)
	}
	if err := os.Rename(tmp, tokenPath); err != nil {
		return fmt.Errorf("writing the token: %w", err)
	}
	now := time.Now()
	life := tr.Status.ExpirationTimestamp.Sub(now)
	r.tokenRefreshAt = now.Add(life * 4 / 5)
	if r.tokenPath == "" {
		server, err := url.Parse(r.a.opts.Config.Host)
		if err != nil {
			return fmt.Errorf("the API server address %q: %w", r.a.opts.Config.Host, err)
		}
		proxy, err := startAPIProxy(r.a.opts.Config.Host)
		if err != nil {
			return err
		}
		kc := filepath.Join(r.dir, "kubeconfig")
		if err := writeTokenKubeconfig(kc, r.a, proxy.server(server.Scheme), tokenPath, r.namespace); err != nil {
			proxy.close()
			return err
		}
		r.mu.Lock()
		r.apiProxy = proxy
		r.tokenPath, r.kubeconfigPath = tokenPath, kc
		r.mu.Unlock()
		r.log.V(1).Info("minted a service-account token", "serviceAccount", sa, "expires", tr.Status.ExpirationTimestamp.Time, "kubeconfig", kc)
	} else {
		r.log.V(1).Info("renewed the service-account token", "serviceAccount", sa, "expires", tr.Status.ExpirationTimestamp.Time)
	}
	return nil
}

// writeTokenKubeconfig writes a kubeconfig that reaches the API server at
// server (the pod's proxy to it) with the token in tokenPath.
func writeTokenKubeconfig(path string, a *Agent, server, tokenPath, namespace string) error {
	cfg := a.opts.Config
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		data, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return fmt.Errorf("reading the cluster CA: %w", err)
		}
		ca = data
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca, InsecureSkipTLSVerify: cfg.Insecure}
	kc.AuthInfos["pod"] = &clientcmdapi.AuthInfo{TokenFile: tokenPath}
	kc.Contexts["pod"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "pod", Namespace: namespace}
	kc.CurrentContext = "pod"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("writing the pod's kubeconfig: %w", err)
	}
	return nil
}
