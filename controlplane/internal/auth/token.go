package auth

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// tokenExpiry reads the "exp" claim of a JWT's payload, or returns the
// zero time when the token is not a JWT or says nothing. The signature is
// not checked here: only a token the API server has just verified is
// read, and only to end its streams sooner.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return time.Time{}
	}
	exp := *claims.Exp
	if math.IsNaN(exp) || exp <= 0 || exp > math.MaxInt32*4 {
		return time.Time{}
	}
	sec, frac := math.Modf(exp)
	return time.Unix(int64(sec), int64(frac*1e9))
}
