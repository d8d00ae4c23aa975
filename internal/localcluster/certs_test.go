package localcluster

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

func TestCertificates(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	serving, err := ca.ServingCert("apiserver", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("serving certificate for 127.0.0.1: %v", err)
	}

	client, err := ca.ClientCert("admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	cpair, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cleaf, err := x509.ParseCertificate(cpair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cleaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if cleaf.Subject.CommonName != "admin" || len(cleaf.Subject.Organization) != 1 || cleaf.Subject.Organization[0] != "system:masters" {
		t.Errorf("client subject: %v", cleaf.Subject)
	}

	priv, pub, err := ServiceAccountKeys()
	if err != nil || len(priv) == 0 || len(pub) == 0 {
		t.Fatalf("service-account keys: %v", err)
	}
}

func TestTailFile(t *testing.T) {
	p := t.TempDir() + "/log"
	if err := writeFile(p, []byte("1\n2\n3\n4\n")); err != nil {
		t.Fatal(err)
	}
	if got := tailFile(p, 2); got != "3\n4" {
		t.Errorf("tail = %q", got)
	}
}

func TestFailedChecks(t *testing.T) {
	body := "[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[+]shutdown ok\nreadyz check failed"
	if got, want := failedChecks(body), "[-]poststarthook/rbac/bootstrap-roles failed: reason withheld"; got != want {
		t.Errorf("failedChecks = %q, want %q", got, want)
	}
	if got := failedChecks("plain"); got != "plain" {
		t.Errorf("failedChecks(plain) = %q", got)
	}
}
