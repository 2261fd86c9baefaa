package chatlog

import "testing"

// FuzzSyncRequest checks the decoder of a peer's sync requests: anything
// it accepts has a known op and ids and messages of bounded size.
func FuzzSyncRequest(f *testing.F) {
	f.Add([]byte(`{"op":"open","ch":"00112233445566778899aabbccddeeff","lower":5}`))
	f.Add([]byte(`{"op":"get","s":"x","ids":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}`))
	f.Add([]byte(`{"op":"put","s":"x","msgs":["AQ=="]}`))
	f.Add([]byte(`{"op":"get","ids":["AA=="]}`))
	f.Add([]byte(`{"op":"nope"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeSyncRequest(b)
		if err != nil {
			return
		}
		if len(b) > maxSyncRequest || len(req.IDs) > maxGetIDs {
			t.Fatalf("accepted %d bytes with %d ids", len(b), len(req.IDs))
		}
		for _, id := range req.IDs {
			if len(id) != len(ID{}) {
				t.Fatalf("accepted an id of %d bytes", len(id))
			}
		}
		for _, m := range req.Msgs {
			if len(m) > MaxEncoded {
				t.Fatalf("accepted a message of %d bytes", len(m))
			}
		}
	})
}
