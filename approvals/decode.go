package approvals

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxCommentRunes bounds a vote's comment or reason.
const MaxCommentRunes = 2000

// voteBody is the JSON body of approve ({"comment"}), deny ({"reason"})
// and revoke ({"reason"}); an empty body is an empty vote.
type voteBody struct {
	Comment string `json:"comment"`
	Reason  string `json:"reason"`
}

// decodeBody reads one JSON object with no unknown fields and nothing after
// it.
func decodeBody(r io.Reader) (voteBody, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return voteBody{}, err
	}
	var b voteBody
	if len(bytes.TrimSpace(raw)) == 0 {
		return b, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return voteBody{}, fmt.Errorf("the body is not a JSON object with comment or reason: %w", err)
	}
	if dec.More() {
		return voteBody{}, errors.New("the body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return voteBody{}, errors.New("the body holds more than one JSON value")
	}
	for _, s := range []string{b.Comment, b.Reason} {
		if utf8.RuneCountInString(s) > MaxCommentRunes {
			return voteBody{}, fmt.Errorf("a comment or reason is at most %d characters", MaxCommentRunes)
		}
	}
	return b, nil
}
