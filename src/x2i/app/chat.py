"""`x2i chat`: a conversation in the terminal over an `x2i.Session`."""

from __future__ import annotations

import sys
from pathlib import Path

from x2i.errors import X2IError

COMMANDS = "type a request; /image PATH, /audio PATH, /video PATH attach an input; /reset; /quit"


def chat_loop(session, out: Path, interactive: bool) -> None:
    """Read turns and commands until /quit or the end of input; each turn's first picture is
    OUT/turn-N.png. A bad turn says why in one line and the conversation goes on."""
    from x2i.media import open_input

    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        print(COMMANDS)
    attached, turn = [], 0
    while True:
        try:
            line = input("x2i> " if interactive else "").strip()
        except EOFError:
            break
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
                attached.append(open_input(argument.strip(), kind=command[1:]))
                print(f"attached {argument.strip()} to the next turn")
            else:
                images = session.send(line, attached)
                attached, turn = [], turn + 1
                path = out / f"turn-{turn}.png"
                images[0].save(path)
                answer = session.history[-1].answer
                print(f"wrote {path}" + (f"  (the MLLM: {answer})" if answer else ""))
        except X2IError as e:
            print(f"x2i: error: {e}", file=sys.stderr)
