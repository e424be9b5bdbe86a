// Package tlsca owns trusting an extra PEM CA bundle on top of the system
// roots: a TLS-intercepting proxy's in front of Qualys, a private S3's.
package tlsca

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Pool returns the system roots plus every certificate in the PEM file at
// path. Its errors start "CA file" and name the path, for the caller to
// prefix with what the roots are for.
func Pool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	// Without system roots (some platforms), trust only the bundle rather
	// than fail: the operator named it because it is the root they need.
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}
