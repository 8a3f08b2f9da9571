"""A bare wechatpy echo handler: the floor any WeChat backend in Python stands on.

Verify the signature, decrypt, parse, reply with the text it got, encrypt; nothing else (no
database, no dedupe, no routing). The same framework (Flask), the same server (gunicorn, same
workers and threads) and the same load as ``huinong serve`` in ``benchmarks/http_throughput.py``,
so the ratio between the two is the cost of what the service does on top.

Configured with the service's variables (``HUINONG_WECHAT_TOKEN``, ``HUINONG_WECHAT_AES_KEY``,
``HUINONG_WECHAT_APPID``), like wechatpy's ``examples/echo-encrypted``::

    .venv/bin/gunicorn --workers 2 --threads 8 --chdir benchmarks echo_app:app
"""

from __future__ import annotations

import os

from flask import Flask, Response, request
from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

TOKEN = os.environ.get("HUINONG_WECHAT_TOKEN", "")
AES_KEY = os.environ.get("HUINONG_WECHAT_AES_KEY", "")
APPID = os.environ.get("HUINONG_WECHAT_APPID", "")

app = Flask(__name__)
crypto = WeChatCrypto(TOKEN, AES_KEY, APPID) if AES_KEY else None


@app.route("/wechat", methods=["GET", "POST"])
def wechat():
    args = request.args
    try:
        check_signature(TOKEN, args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", ""))
    except InvalidSignatureException:
        return Response("forbidden", status=403)
    if request.method == "GET":
        return args.get("echostr", "")
    body = request.get_data()
    if crypto is not None:
        try:
            body = crypto.decrypt_message(body, args.get("msg_signature", ""), args["timestamp"], args["nonce"])
        except (InvalidSignatureException, InvalidAppIdException, KeyError):
            return Response("forbidden", status=403)
    msg = parse_message(body)
    content = getattr(msg, "content", None) or f"{msg.type}:{getattr(msg, 'event', '')}"
    xml = create_reply(content, msg).render()
    if crypto is not None:
        xml = crypto.encrypt_message(xml, args["nonce"], args["timestamp"])
    return Response(xml, content_type="application/xml; charset=utf-8")
