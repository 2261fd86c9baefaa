package browsertest

import (
	"context"
	"fmt"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// Enter presses the Enter key in the focused element as a keyboard does,
// with modifiers (chromedp.ModifierShift and so on): a rawKeyDown, then
// the char "\r", then a keyUp. A page that handles Enter on keydown and
// cancels it gets no line break, as with a real keyboard: Chromium drops
// the char of a cancelled rawKeyDown. chromedp's kb.Enter sends a keyDown
// instead, whose char is never dropped: the page then finds a stray line
// break in the field, or not, depending on whether its own handler (a
// send that clears the field when the server answers) ran before or after
// that char arrived.
func Enter(modifiers chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		key := input.DispatchKeyEventParams{
			Key: "Enter", Code: "Enter", Modifiers: int64(modifiers),
			WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		}
		down, char, up := key, key, key
		down.Type = input.DispatchKeyEventTypeRawKeyDown
		char.Type, char.Text, char.UnmodifiedText = input.DispatchKeyEventTypeChar, "\r", "\r"
		up.Type = input.DispatchKeyEventTypeKeyUp
		for _, ev := range []input.DispatchKeyEventParams{down, char, up} {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, ev); err != nil {
				return fmt.Errorf("browsertest: press Enter: %w", err)
			}
		}
		return nil
	})
}
