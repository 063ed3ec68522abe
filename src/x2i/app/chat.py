"""`x2i chat`: a conversation in the terminal over an `x2i.Session`."""

from __future__ import annotations

import sys
from pathlib import Path

from x2i.errors import X2IError

COMMANDS = "type a request; /image PATH, /audio PATH, /video PATH attach an input; /reset; /quit"


def chat_loop(session, out: Path, interactive: bool) -> None:
    """Read turns and commands until /quit or the end of input; each turn's first picture is
    OUT/turn-N.png. A bad turn, an unknown /command, an input the reader does not take or a line
    that is not text says why in one line, drops what it attached, and the conversation goes on."""
    from x2i.inference.request import Request
    from x2i.media import open_input, save_image

    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        print(COMMANDS)
    attached, turn = [], 0
    while True:
        try:
            line = input("x2i> " if interactive else "").strip()
        except EOFError:
            break
        except UnicodeDecodeError:
            print("x2i: error: that line is not text in the terminal's encoding; type it again", file=sys.stderr)
            continue
        command, _, argument = line.partition(" ")
        try:
            if not line:
                continue
            if command == "/quit":
                break
            if command == "/reset":
                session.reset()
                attached = []
                print("new conversation")
            elif command in ("/image", "/audio", "/video"):
                item = open_input(argument.strip(), kind=command[1:])
                session.pipe.encoder.check(Request("", [item]))  # a kind the reader does not take fails now, not every turn after
                attached.append(item)
                print(f"attached {argument.strip()} to the next turn")
            elif command.startswith("/") and len(command) > 1 and "/" not in command[1:]:
                print(f"x2i: error: unknown command {command}; {COMMANDS}", file=sys.stderr)
            else:
                images = session.send(line, attached)
                attached, turn = [], turn + 1
                path = out / f"turn-{turn}.png"
                save_image(images[0], path)
                answer = session.history[-1].answer
                print(f"wrote {path}" + (f"  (the MLLM: {answer})" if answer else ""))
        except X2IError as e:
            print(f"x2i: error: {e}", file=sys.stderr)
