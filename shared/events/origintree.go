package events

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Origin proofs of many events at once (SignAll).
//
// A function that writes many events in one transaction (a batch of
// transfers, a group commit, a run of invoices) signs them together, with
// one Ed25519 signature per tree of up to maxTreeEvents events instead of
// one per event: a signature costs 15–45 µs of CPU on the machines of
// docs/benchmarks.md, the largest single item of process-transaction's
// profile in a batch of transfers. The events' OriginBytes are the leaves
// of a Merkle tree as RFC 9162 §2.1 (Certificate Transparency) builds it —
// SHA-256, a leaf hashed with the byte 0x00 before it, an inner node with
// 0x01 — and the signature covers the tree's size and root (treeMessage,
// whose tag "billfn-origin-tree-v1" no event's OriginBytes starts with, so
// a tree's signature never passes for one event's nor the reverse). Each
// event carries that signature in originsig, the key in originkid as
// before, and its place in the tree in a third attribute:
//
//	originpath  "<index>.<size>.<hashes>": the event's index in the tree
//	            and the tree's size in decimal, then the hashes of its
//	            inclusion proof (32 bytes each, leaf to root) concatenated,
//	            base64url without padding
//
// Every event is still verified alone: a consumer hashes its OriginBytes,
// folds the path into a root (transparency-dev/merkle's
// RootFromInclusionProof, what Certificate Transparency's and Sigstore's
// logs are checked with) and checks the signature over that root with a
// key of the event's source. Changing any signed attribute changes the
// leaf, hence the root, and the signature no longer matches: putting an
// event of one's own into a signed tree needs a second preimage of
// SHA-256. What a proof tells a consumer is what one event's signature
// told it: this source's key signed exactly these bytes.
//
// A consumer keeps the tree signatures it has verified (verifiedTrees), so
// the other events of a tree, in the same delivery or a later one, cost
// their hashes only.

// OriginPathExt is the attribute of an event signed in a tree.
const OriginPathExt = "originpath"

// originTreeVersion starts the bytes a tree's signature signs.
const originTreeVersion = "billfn-origin-tree-v1\n"

// maxTreeEvents is the most events SignAll puts under one signature: an
// event's path is then at most five hashes (215 characters), whatever the
// size of the write, and a signature is shared by 32 events.
const maxTreeEvents = 32

// maxVerifiedTreeSize bounds the trees a consumer accepts (a path of at
// most 16 hashes): larger than SignAll makes, so a producer may sign
// larger trees later, small enough that a path costs little to refuse.
const maxVerifiedTreeSize = 1 << 16

var treeHasher = rfc6962.DefaultHasher

// treeMessage is what a tree's signature signs: the tag line, then
// "size <n>" and "root <lower-case hex>", each on its line.
func treeMessage(size uint64, root []byte) []byte {
	b := make([]byte, 0, len(originTreeVersion)+32+2*len(root))
	b = append(b, originTreeVersion...)
	b = append(b, "size "...)
	b = strconv.AppendUint(b, size, 10)
	b = append(b, "\nroot "...)
	b = hex.AppendEncode(b, root)
	return append(b, '\n')
}

// SignAll adds the signer's origin proof to each payloads[i], an unsigned
// structured-mode event whose OriginBytes are msgs[i] (EncodeLater, or
// MarshalLater): the events are split into trees of at most maxTreeEvents,
// as even as can be, each signed once. An event alone in its tree gets
// the proof of one event (originkid, originsig), as SignEncoded writes it.
// The proof's members are appended to the JSON object.
func (s *OriginSigner) SignAll(payloads, msgs [][]byte) {
	n := len(payloads)
	if n == 0 {
		return
	}
	trees := (n + maxTreeEvents - 1) / maxTreeEvents
	start := 0
	for t := range trees {
		end := start + (n-start)/(trees-t) // the rest shared among the trees left
		s.signTree(payloads[start:end], msgs[start:end])
		start = end
	}
}

// Unsigned is events encoded without their origin proof (MarshalLater)
// in a slice of payloads a statement holds, for SignTogether to sign in
// place, with the events other writes left unsigned, before the statement
// runs: a group commit's writes are signed together.
type Unsigned struct {
	signer   *OriginSigner
	payloads [][]byte
	at       []int    // the payloads to sign
	msgs     [][]byte // their OriginBytes
	signed   bool
}

// Unsigned starts an Unsigned of s's events among payloads.
func (s *OriginSigner) Unsigned(payloads [][]byte) *Unsigned {
	return &Unsigned{signer: s, payloads: payloads}
}

// Add notes payloads[i], an unsigned event whose OriginBytes are msg, as
// one to sign.
func (u *Unsigned) Add(i int, msg []byte) {
	u.at, u.msgs = append(u.at, i), append(u.msgs, msg)
}

// SignTogether signs the events every u left unsigned, those of one signer
// together (SignAll: one signature for each tree of up to 32), in the
// payloads their statements hold. Nil elements and an Unsigned signed
// already are left alone, so a write run again signs nothing twice.
func SignTogether(us ...*Unsigned) {
	type batch struct {
		payloads, msgs [][]byte
		from           []*Unsigned
	}
	var bySigner map[*OriginSigner]*batch
	for _, u := range us {
		if u == nil || u.signed || len(u.at) == 0 {
			continue
		}
		if bySigner == nil {
			bySigner = make(map[*OriginSigner]*batch, 1)
		}
		b := bySigner[u.signer]
		if b == nil {
			b = &batch{}
			bySigner[u.signer] = b
		}
		for k, i := range u.at {
			b.payloads, b.msgs = append(b.payloads, u.payloads[i]), append(b.msgs, u.msgs[k])
		}
		b.from = append(b.from, u)
	}
	for signer, b := range bySigner {
		signer.SignAll(b.payloads, b.msgs)
		n := 0
		for _, u := range b.from {
			for _, i := range u.at {
				u.payloads[i] = b.payloads[n]
				n++
			}
			u.signed = true
		}
	}
}

// signTree signs payloads as one tree.
func (s *OriginSigner) signTree(payloads, msgs [][]byte) {
	if len(payloads) == 1 {
		payloads[0] = appendProof(payloads[0], s.kid, ed25519.Sign(s.key, msgs[0]), "")
		return
	}
	leaves := make([][]byte, len(msgs))
	for i, m := range msgs {
		leaves[i] = treeHasher.HashLeaf(m)
	}
	paths := make([][][]byte, len(msgs))
	root := treeRoot(leaves, paths)
	sig := ed25519.Sign(s.key, treeMessage(uint64(len(msgs)), root))
	size := strconv.Itoa(len(msgs))
	for i := range payloads {
		payloads[i] = appendProof(payloads[i], s.kid, sig, encodePath(i, size, paths[i]))
	}
}

// treeRoot is the root of RFC 9162's tree over leaves (hashed already),
// and appends to each paths[i] its leaf's inclusion proof, leaf to root:
// the tree of n > 1 leaves is the node of the tree of its first k leaves
// (k the largest power of two below n) and that of the rest, and a leaf's
// path is its path in its own half followed by the other half's root.
func treeRoot(leaves [][]byte, paths [][][]byte) []byte {
	n := len(leaves)
	if n == 1 {
		return leaves[0]
	}
	k := 1
	for 2*k < n {
		k *= 2
	}
	left, right := treeRoot(leaves[:k], paths[:k]), treeRoot(leaves[k:], paths[k:])
	for i := range n {
		if i < k {
			paths[i] = append(paths[i], right)
		} else {
			paths[i] = append(paths[i], left)
		}
	}
	return treeHasher.HashChildren(left, right)
}

func encodePath(index int, size string, hashes [][]byte) string {
	raw := make([]byte, 0, 32*len(hashes))
	for _, h := range hashes {
		raw = append(raw, h...)
	}
	return strconv.Itoa(index) + "." + size + "." + base64.RawURLEncoding.EncodeToString(raw)
}

// appendProof returns payload, a JSON object (compact at its end: its
// closing brace last), with the proof's members after its own: originkid,
// originsig and, for an event of a tree, originpath (none of whose bytes
// needs escaping: hex, base64url, digits and dots).
func appendProof(payload []byte, kid string, sig []byte, path string) []byte {
	body := payload[:len(payload)-1] // without the closing brace
	sigLen := base64.RawURLEncoding.EncodedLen(len(sig))
	out := make([]byte, 0, len(payload)+len(kid)+sigLen+len(path)+48)
	out = append(out, body...)
	if len(bytes.TrimSpace(body[1:])) > 0 { // members before the proof's
		out = append(out, ',')
	}
	out = append(out, `"`+OriginKidExt+`":"`...)
	out = append(out, kid...)
	out = append(out, `","`+OriginSigExt+`":"`...)
	out = base64.RawURLEncoding.AppendEncode(out, sig)
	if path != "" {
		out = append(out, `","`+OriginPathExt+`":"`...)
		out = append(out, path...)
	}
	return append(out, `"}`...)
}

// originPath is an event's place in a signed tree: its originpath.
type originPath struct {
	index, size uint64
	hashes      [][]byte
}

var errBadPath = errors.New("malformed")

// parseOriginPath reads an originpath: index and size in decimal without
// leading zeros, 2 <= size <= maxVerifiedTreeSize, index < size, and
// whole hashes in strict base64url (their number is checked against
// the tree when the path is folded).
func parseOriginPath(s string) (*originPath, error) {
	idx, rest, ok1 := strings.Cut(s, ".")
	sz, enc, ok2 := strings.Cut(rest, ".")
	index, ok3 := decimal(idx)
	size, ok4 := decimal(sz)
	if !ok1 || !ok2 || !ok3 || !ok4 || size < 2 || size > maxVerifiedTreeSize || index >= size {
		return nil, errBadPath
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil || len(raw)%treeHasher.Size() != 0 || base64.RawURLEncoding.EncodedLen(len(raw)) != len(enc) {
		return nil, errBadPath
	}
	p := &originPath{index: index, size: size, hashes: make([][]byte, 0, len(raw)/treeHasher.Size())}
	for i := 0; i < len(raw); i += treeHasher.Size() {
		p.hashes = append(p.hashes, raw[i:i+treeHasher.Size():i+treeHasher.Size()])
	}
	return p, nil
}

// decimal reads a number of at most 5 digits without leading zeros.
func decimal(s string) (uint64, bool) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = 10*n + uint64(s[i]-'0')
	}
	return n, true
}

// message is what the tree's signature must sign for an event whose
// OriginBytes are leaf to be in it at p: treeMessage of the root its path
// folds into.
func (p *originPath) message(leaf []byte) ([]byte, error) {
	root, err := proof.RootFromInclusionProof(treeHasher, p.index, p.size, treeHasher.HashLeaf(leaf), p.hashes)
	if err != nil {
		return nil, errBadPath
	}
	return treeMessage(p.size, root), nil
}

// verifiedTrees are the tree signatures a consumer has verified, by key,
// signature and signed bytes: the other events of a tree need only their
// path folded. A key removed from the OriginKeys is no longer found for
// an event, before this set is looked at. Bounded: emptied when full.
type verifiedTrees struct {
	mu sync.Mutex
	m  map[string]struct{}
}

const maxVerifiedTrees = 4096

func treeKey(pub ed25519.PublicKey, sig []byte, msg []byte) string {
	return string(pub) + string(sig) + string(msg)
}

func (v *verifiedTrees) has(key string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.m[key]
	return ok
}

func (v *verifiedTrees) add(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerifiedTrees {
		v.m = make(map[string]struct{}, 64)
	}
	v.m[key] = struct{}{}
}
