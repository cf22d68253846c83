package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	"k8s.io/client-go/rest"
)

// Where the API server publishes its service-account issuer (OIDC
// discovery) and the public keys its tokens are signed with. Reading them
// takes the system:service-account-issuer-discovery ClusterRole.
const (
	discoveryPath = "/.well-known/openid-configuration"
	jwksPath      = "/openid/v1/jwks"
)

// signatureAlgorithms are the algorithms the API server signs
// service-account tokens with (RSA and ECDSA P-256 keys); "none" and
// every other algorithm are refused before a key is looked at.
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// errNoKeys: the keys were never read.
var errNoKeys = errors.New("the service-account keys were not read")

// keySet is the API server's issuer and public keys, read through the
// API client and read again periodically, and on a key ID it does not
// know, at most once per minRefresh.
type keySet struct {
	client  rest.Interface
	timeout time.Duration
	// refreshes bounds the reads made for unknown key IDs: a flood of
	// tokens naming made-up keys costs the API server one read per
	// minRefresh, whatever their number.
	refreshes *rate.Limiter
	flight    singleflight.Group

	mu     sync.RWMutex
	issuer string
	keys   map[string]jose.JSONWebKey // by key ID
	err    error                      // the last read's error
	reads  int                        // reads that succeeded
}

func newKeySet(client rest.Interface, minRefresh, timeout time.Duration) *keySet {
	return &keySet{
		client:    client,
		timeout:   timeout,
		refreshes: rate.NewLimiter(rate.Every(minRefresh), 1),
		err:       errNoKeys,
	}
}

// issuerAndKey returns the issuer and the key with the given ID; ok is
// false when the keys were never read or none has that ID.
func (k *keySet) issuerAndKey(kid string) (issuer string, key jose.JSONWebKey, ok bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok = k.keys[kid]
	return k.issuer, key, ok
}

// loaded reports whether the keys were read once at least.
func (k *keySet) loaded() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys != nil
}

// refreshForUnknown reads the keys again for a key ID not in the set, if
// no such read happened within minRefresh; callers at once share one.
func (k *keySet) refreshForUnknown(ctx context.Context) {
	if !k.refreshes.Allow() {
		return
	}
	_, _, _ = k.flight.Do("refresh", func() (any, error) { return nil, k.refresh(ctx) })
}

// refresh reads the issuer and the keys; on failure the last keys read
// stay in use.
func (k *keySet) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	issuer, keys, err := k.read(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.err = err
	if err != nil {
		return err
	}
	k.issuer, k.keys = issuer, keys
	k.reads++
	return nil
}

func (k *keySet) read(ctx context.Context) (string, map[string]jose.JSONWebKey, error) {
	// Each path is asked for the one type it serves: the API server
	// answers 406 to an Accept header that does not admit it, and the
	// client's default asks for protobuf.
	raw, err := k.client.Get().AbsPath(discoveryPath).SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("get %s: %w", discoveryPath, err)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", nil, fmt.Errorf("%s: %w", discoveryPath, err)
	}
	if doc.Issuer == "" {
		return "", nil, fmt.Errorf("%s names no issuer", discoveryPath)
	}
	if raw, err = k.client.Get().AbsPath(jwksPath).SetHeader("Accept", "application/jwk-set+json").DoRaw(ctx); err != nil {
		return "", nil, fmt.Errorf("get %s: %w", jwksPath, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return "", nil, fmt.Errorf("%s: %w", jwksPath, err)
	}
	keys := signingKeys(set)
	if len(keys) == 0 {
		return "", nil, fmt.Errorf("%s has no RS256 or ES256 public key", jwksPath)
	}
	return doc.Issuer, keys, nil
}

// signingKeys keeps the public signature keys with an ID and an
// algorithm the API server signs with (or none said).
func signingKeys(set jose.JSONWebKeySet) map[string]jose.JSONWebKey {
	keys := map[string]jose.JSONWebKey{}
	for _, key := range set.Keys {
		if key.KeyID == "" || !key.Valid() || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != string(jose.RS256) && key.Algorithm != string(jose.ES256) {
			continue
		}
		keys[key.KeyID] = key
	}
	return keys
}
