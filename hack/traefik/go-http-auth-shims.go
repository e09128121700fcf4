package auth

// The two functions Traefik's fork of go-http-auth adds to upstream v0.4.0 (see README.md).

import (
	"net/http"
	"strings"
)

// CheckSecret reports whether password matches the hashed secret.
func CheckSecret(password, secret string) bool {
	compare := compareFuncs[0].compare
	for _, cmp := range compareFuncs[1:] {
		if strings.HasPrefix(secret, cmp.prefix) {
			compare = cmp.compare
			break
		}
	}
	return compare([]byte(secret), []byte(password)) == nil
}

// RequireAuthStale is the same as RequireAuth here.
func (a *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) { a.RequireAuth(w, r) }
