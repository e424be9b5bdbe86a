package tlsca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPool(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	srv.Close()
	cert := srv.Certificate()
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		path     string
		wantErr  string // substring; "" = the pool trusts the test server
		notExist bool
	}{
		{"one certificate", write("one.pem", certPEM), "", false},
		{"junk around a certificate", write("mixed.pem", "junk\n"+certPEM+"more junk\n"), "", false},
		{"missing", filepath.Join(dir, "missing.pem"), "CA file: ", true},
		{"not PEM", write("junk.pem", "junk"), "holds no PEM certificate", false},
		{"empty", write("empty.pem", ""), "holds no PEM certificate", false},
		{"a key, not a certificate", write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "holds no PEM certificate", false},
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "example.com"}); err == nil {
		t.Fatal("the test server's certificate verifies with the system roots alone; the test proves nothing")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := Pool(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
					t.Fatalf("Pool(%s) = %v, want an error containing %q and the path", tt.path, err, tt.wantErr)
				}
				if errors.Is(err, fs.ErrNotExist) != tt.notExist {
					t.Fatalf("Pool(%s): errors.Is(err, fs.ErrNotExist) = %t, want %t", tt.path, !tt.notExist, tt.notExist)
				}
				return
			}
			if err != nil {
				t.Fatalf("Pool(%s): %v", tt.path, err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"}); err != nil {
				t.Fatalf("the test server's certificate does not verify with the pool: %v", err)
			}
		})
	}
}
