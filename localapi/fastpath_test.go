package localapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// isJSONRef is isJSON without its fast path.
func isJSONRef(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

func TestIsJSONMatchesParseMediaType(t *testing.T) {
	cases := []string{
		"application/json", "APPLICATION/JSON", "Application/Json", "application/json; charset=utf-8",
		"application/json; charset=UTF-8", "Application/JSON; Charset=Utf-8", "application/json;charset=utf-8",
		"application/json ; charset=utf-8", "application/json; charset=utf-8;", "application/json; charset",
		"application/json; charset=", "application/json; charset=utf-8; charset=latin1", "application/json;",
		"application/json ", " application/json", "application/json\x00", "application/jsonx", "application/jso",
		"application/j\u017fon", "application/json; chArset=utf-8", "application/json; char\u017fet=utf-8",
		"application/vnd.api+json", "application/ld+JSON", "application/+json", "text/json", "json", "",
		"application/x-www-form-urlencoded", "application/json; charset=\"utf-8\"", "application/json, text/plain",
		"application/json\t", "application/json; charset=utf-8 ", "application /json", "application/json; q=1",
	}
	for _, ct := range cases {
		if got, want := isJSON(ct), isJSONRef(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
	// Case and byte mutations of the two fast values.
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("aAjJsSoOnN;=- \t/+\"\x00\xc5\xbf8uUtTfF")
	for n := 0; n < 50000; n++ {
		b := []byte([]string{"application/json", "application/json; charset=utf-8"}[rng.IntN(2)])
		for k := rng.IntN(3); k >= 0; k-- {
			p := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				if c := b[p]; 'a' <= c && c <= 'z' {
					b[p] = c - 'a' + 'A'
				}
			case 1:
				b[p] = alphabet[rng.IntN(len(alphabet))]
			default:
				b = append(b[:p], b[p+1:]...)
			}
		}
		if got, want := isJSON(string(b)), isJSONRef(string(b)); got != want {
			t.Fatalf("isJSON(%q) = %v, want %v", b, got, want)
		}
	}
}

func BenchmarkIsJSON(b *testing.B) {
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "application/vnd.api+json"} {
		b.Run(ct, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				isJSON(ct)
			}
		})
		b.Run(ct+"/ParseMediaType", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				isJSONRef(ct)
			}
		})
	}
}

// readRef is readBody as it was: bytes.Buffer.ReadFrom over MaxBytesReader.
func readRef(r io.Reader, limit int64) (int, []byte) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(r), limit)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, nil
		}
		return http.StatusBadRequest, nil
	}
	return http.StatusOK, buf.Bytes()
}

func TestReadBodyToMatchesMaxBytesReader(t *testing.T) {
	boom := errors.New("boom")
	readers := map[string]func([]byte) io.Reader{
		"plain":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"one byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":     func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"data+EOF": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
		"error":    func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b), iotest.ErrReader(boom)) },
		"data+err": func(b []byte) io.Reader { return &dataErrReader{b: b, err: boom} },
		"truncated": func(b []byte) io.Reader {
			return io.MultiReader(bytes.NewReader(b), iotest.ErrReader(io.ErrUnexpectedEOF))
		},
	}
	for _, limit := range []int64{1, 2, 7, 511, 512, 513, 1000, 4096} {
		for _, n := range []int64{0, 1, limit - 1, limit, limit + 1, limit + 2, 2 * limit, 3000} {
			if n < 0 {
				continue
			}
			body := bytes.Repeat([]byte("x"), int(n))
			for name, mk := range readers {
				wantCode, want := readRef(mk(body), limit)
				s := New(Config{Store: benchStore{}, MaxBodyBytes: limit})
				req := httptest.NewRequest("POST", "/", io.NopCloser(mk(body)))
				for _, dst := range [][]byte{nil, make([]byte, 0, 3), make([]byte, 5, 600)[5:]} {
					rec := httptest.NewRecorder()
					req.Body = io.NopCloser(mk(body))
					got, ok := s.readBodyTo(rec, req, dst)
					code := http.StatusOK
					if !ok {
						code = rec.Code
					}
					if code != wantCode || (ok && !bytes.Equal(got, want)) {
						t.Fatalf("limit %d, %d bytes, %s reader: got %d (%d bytes), want %d (%d bytes)", limit, n, name, code, len(got), wantCode, len(want))
					}
				}
			}
		}
	}
}

// dataErrReader returns all its data with a non-EOF error in one call.
type dataErrReader struct {
	b    []byte
	err  error
	done bool
}

func (r *dataErrReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	if len(r.b) == 0 {
		r.done = true
		return n, r.err
	}
	return n, nil
}

var genID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-z]+$`)

func TestRequestID(t *testing.T) {
	h := newHarness(t)
	n := 0
	// A raw connection: net/http's client refuses to send the malformed
	// ids this sends.
	post := func(rid string, ctype string) *http.Response {
		n++
		b := body(act(fmt.Sprintf("rid-%d", n), ""))
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := "POST /v1/actions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype +
			"\r\nContent-Length: " + strconv.Itoa(len(b)) + "\r\n"
		if rid != "" {
			req += "X-Request-Id: " + rid + "\r\n"
		}
		if _, err := conn.Write(append([]byte(req+"\r\n"), b...)); err != nil {
			t.Fatal(err)
		}
		r, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		return r
	}
	seen := map[string]bool{}
	for _, given := range []string{"", " ", "a b", "é", "abc\x7f", strings.Repeat("a", 65)} {
		for range 3 {
			rec := post(given, "application/json")
			got := rec.Header.Values("X-Request-Id")
			if len(got) != 1 || !genID.MatchString(got[0]) || seen[got[0]] {
				t.Fatalf("given %q: X-Request-Id %q", given, got)
			}
			seen[got[0]] = true
		}
	}
	for _, given := range []string{"req-1", "!~", strings.Repeat("z", 64), "a:b/c?d"} {
		for _, ct := range []string{"application/json", "text/plain"} {
			rec := post(given, ct)
			if got := rec.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != given {
				t.Fatalf("given %q: X-Request-Id %q", given, got)
			}
		}
	}
	// A handler called without ServeHTTP's statusWriter still sets it.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/actions", nil)
	req.Header.Set("X-Request-Id", "direct")
	if id := requestID(rec, req); id != "direct" || rec.Header().Get("X-Request-Id") != "direct" {
		t.Fatalf("direct: %q %q", id, rec.Header())
	}
}

// TestPostActionsAnswer checks the whole 202 answer, headers included, and
// that reusing pooled bodies never leaks one request into another.
func TestPostActionsAnswer(t *testing.T) {
	h := newHarness(t)
	for i := range 20 {
		b := body(act("id-"+strings.Repeat("x", i*6), ""), act("other-"+strings.Repeat("y", i), ""))
		resp, got := h.do(t, "POST", "/v1/actions", "Application/JSON; charset=UTF-8", b, "X-Request-Id", "r-1")
		if resp.StatusCode != 202 || string(got) != "{\"accepted\":2,\"duplicates\":0}\n" ||
			resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" ||
			resp.Header.Get("X-Request-Id") != "r-1" {
			t.Fatalf("got %d %q %v", resp.StatusCode, got, resp.Header)
		}
	}
	es, err := h.sp.Lease(t.Context(), "tencent", 100, 1<<20)
	if err != nil || len(es) != 40 {
		t.Fatalf("stored %d entries, %v", len(es), err)
	}
	for _, e := range es {
		var a map[string]any
		if err := json.Unmarshal(e.Payload, &a); err != nil || a["id"] != e.ID {
			t.Fatalf("entry %s payload %s", e.ID, e.Payload)
		}
	}
}

func TestHeaderMatchesGet(t *testing.T) {
	h := http.Header{}
	h.Set("content-type", "application/json")
	h.Add("x-request-id", "a")
	h.Add("X-Request-Id", "b")
	h["Origin"] = []string{}
	for _, k := range []string{"Content-Type", "X-Request-Id", "Origin", "Sec-Fetch-Site", "Authorization"} {
		if http.CanonicalHeaderKey(k) != k {
			t.Fatalf("%q is not canonical", k)
		}
		if got, want := header(h, k), h.Get(k); got != want {
			t.Fatalf("header(%q) = %q, want %q", k, got, want)
		}
	}
}
