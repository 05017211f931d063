package collector

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Redacted is what RedactURL puts in place of a secret.
const Redacted = "xxxxx"

// UnparseableURL is what RedactURL returns for a URL it cannot parse: the
// text might hold a secret it cannot find.
const UnparseableURL = "(unparseable URL)"

// sensitiveParams are pieces of query parameter names whose values are
// secrets: token, access_token, secret, client_secret, password, passwd,
// pass, pwd, key, apikey, api_key, access_key, X-API-Key, sig, signature,
// X-Amz-Signature, credential, X-Amz-Credential, auth, authorization,
// private_key, session, jwt. Matching a piece anywhere in the name, case
// aside, hides some harmless values too (a "monkey" parameter); that is
// the side to err on.
var sensitiveParams = []string{"token", "secret", "pass", "pwd", "key", "sig", "cred", "auth", "private", "session", "jwt"}

// sensitiveNames are whole parameter names whose values are secrets: an
// OAuth authorization code (as a piece it would match too much).
var sensitiveNames = []string{"code"}

func sensitiveParam(name string) bool {
	name = strings.ToLower(name)
	if slices.Contains(sensitiveNames, name) {
		return true
	}
	for _, s := range sensitiveParams {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// RedactURL returns a URL fit to show in a log line, an event, a metric
// name or an error: a user name and password in it are replaced by
// "xxxxx" (a user name is often a key or a token, as in https://TOKEN@host
// or https://KEY:@host), and so is the value of every query
// parameter (and fragment parameter) whose name looks secret: token,
// secret, password, key, sig, signature, credential, auth, private,
// session, jwt and their variants (api_key, access_token,
// X-Amz-Signature, X-Amz-Credential, …), in any case. The scheme, host,
// path and other parameters stay, so a person can tell URLs apart. A URL
// that does not parse comes back as UnparseableURL, never as itself.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return UnparseableURL
	}
	if u.User != nil {
		// The user name goes too: it is as often a key (https://KEY:@host,
		// https://TOKEN@host) as a name.
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(Redacted, Redacted)
		} else {
			u.User = url.User(Redacted)
		}
	}
	if u.Opaque != "" {
		// "user:pw@host" parses as scheme "user" and opaque "pw@host".
		if i := strings.LastIndexByte(u.Opaque, '@'); i >= 0 {
			u.Scheme, u.Opaque = Redacted, Redacted+u.Opaque[i:]
		}
	}
	u.RawQuery = redactParams(u.RawQuery)
	if frag := u.EscapedFragment(); strings.Contains(frag, "=") {
		frag = redactParams(frag)
		if f, err := url.PathUnescape(frag); err == nil {
			u.Fragment, u.RawFragment = f, frag
		} else {
			u.Fragment, u.RawFragment = "", ""
		}
	}
	return u.String()
}

// redactParams hides the values of sensitive parameters in an encoded
// query, keeping the order and encoding of the rest. Both & and ; count as
// separators: some servers take either.
func redactParams(query string) string {
	var b strings.Builder
	for query != "" {
		i := strings.IndexAny(query, "&;")
		param, sep := query, ""
		if i >= 0 {
			param, sep, query = query[:i], query[i:i+1], query[i+1:]
		} else {
			query = ""
		}
		name, _, hasValue := strings.Cut(param, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if hasValue && sensitiveParam(name) {
			param = param[:strings.IndexByte(param, '=')+1] + Redacted
		}
		b.WriteString(param)
		b.WriteString(sep)
	}
	return b.String()
}

// hideURL takes the URL out of the *url.Error net/http returns, which
// prints it whole ("Get \"http://user@host/?token=…\": dial tcp …"; only a
// password is hidden): the caller names the target itself, redacted. A URL
// other than the request's (after a redirect, which the target chose)
// stays, redacted.
func hideURL(err error, reqURL string) error {
	ue, ok := err.(*url.Error)
	if !ok {
		if errors.As(err, &ue) { // deeper in the chain: redact it where it is
			ue.URL = RedactURL(ue.URL)
		}
		return err
	}
	if shown := RedactURL(ue.URL); shown != RedactURL(reqURL) {
		return fmt.Errorf("redirected to %s: %w", shown, ue.Err)
	}
	return ue.Err
}
