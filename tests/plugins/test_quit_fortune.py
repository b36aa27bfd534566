"""Tests of quit_fortune: Debian's real /usr/games/fortune (fortune-mod) runs at QUIT, on a
fortune file the test makes with the real ``strfile``, over real sockets."""

import os
import subprocess

from twisted.trial import unittest

from tests.support.harness import StartupErrorMixin
from tests.support.server import connect, start_server

FORTUNE = "/usr/games/fortune"
BYE = (221, ["mx.example.org closing connection. Have a wonderful day."])


def fortune_file(testcase, text):
    """A fortune database holding ``text`` as its one fortune (strfile makes its index)."""
    path = os.path.abspath(testcase.mktemp())
    with open(path, "w") as f:
        f.write(text + "%\n")
    subprocess.run(["strfile", path], check=True, stdout=subprocess.DEVNULL)
    return path


def script(testcase, body):
    """An executable shell script standing in for fortune (a failing or hanging program)."""
    path = os.path.abspath(testcase.mktemp())
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return path


class QuitFortuneTests(StartupErrorMixin, unittest.TestCase):
    if not (os.access(FORTUNE, os.X_OK) and os.access("/usr/bin/strfile", os.X_OK)):
        skip = "fortune-mod is not installed"

    async def quit_reply(self, line, hello="HELO client.example"):
        _, port = start_server(self, [line])
        client = await connect(self, port)
        await client.command(hello)
        reply = await client.command("QUIT")
        await client.wait_closed()
        return reply

    async def test_fortune_after_helo(self):
        path = fortune_file(self, "Short fortunes are the\n\tbest ones.\n")
        self.assertEqual(await self.quit_reply("quit_fortune file " + path), (221, [
            "mx.example.org closing connection.",
            "  / Short fortunes are the", "  /         best ones."]))

    async def test_no_fortune_after_ehlo(self):
        path = fortune_file(self, "Never shown.\n")
        self.assertEqual(await self.quit_reply("quit_fortune file " + path, "EHLO client.example"), BYE)

    async def test_no_fortune_before_hello(self):
        path = fortune_file(self, "Shown: 0.94 only skips EHLO.\n")
        _, port = start_server(self, ["quit_fortune file " + path])
        client = await connect(self, port)
        self.assertEqual((await client.command("QUIT"))[1][1:], ["  / Shown: 0.94 only skips EHLO."])

    async def test_failing_program_gives_the_usual_reply(self):
        failing = script(self, "echo 'half a fortune'; exit 1")
        self.assertEqual(await self.quit_reply("quit_fortune fortune " + failing), BYE)

    async def test_missing_program_gives_the_usual_reply(self):
        self.assertEqual(await self.quit_reply("quit_fortune fortune /nonexistent/fortune"), BYE)

    async def test_slow_program_is_killed(self):
        hanging = script(self, "exec sleep 600")
        self.assertEqual(await self.quit_reply("quit_fortune timeout 0.2 fortune " + hanging), BYE)

    def test_bad_arguments(self):
        self.assertStartupError(["quit_fortune timeout -1"], ":1: plugin quit_fortune: timeout must be a positive number")
        self.assertStartupError(["quit_fortune file /nonexistent"], ":1: plugin quit_fortune: file /nonexistent: no such fortune file")
        self.assertStartupError(["quit_fortune colour red"], ":1: plugin quit_fortune: unknown argument 'colour'")
