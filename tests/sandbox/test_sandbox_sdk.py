"""The unmodified lark-oapi HTTP client against the sandbox: only the domain changes."""

from __future__ import annotations

import json
import uuid

import lark_oapi as lark
from lark_oapi.api.authen.v1 import GetUserInfoRequest
from lark_oapi.api.contact.v3 import GetUserRequest
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    PatchMessageRequest,
    PatchMessageRequestBody,
)

from tests.sandbox.helpers import authorize_and_exchange, card


def sdk_client(sandbox, app_id=None, app_secret=None) -> lark.Client:
    return (
        lark.Client.builder()
        .app_id(app_id or sandbox.app["app_id"])
        .app_secret(app_secret or sandbox.app["app_secret"])
        .domain(sandbox.url)
        .enable_set_token(True)  # lark-oapi 1.7.5 only passes user tokens with this on
        .build()
    )


def create_request(open_id: str, content: dict, uuid_: str | None = None) -> CreateMessageRequest:
    body = (
        CreateMessageRequestBody.builder()
        .receive_id(open_id)
        .msg_type("interactive")
        .content(json.dumps(content))
    )
    if uuid_:
        body = body.uuid(uuid_)
    return (
        CreateMessageRequest.builder().receive_id_type("open_id").request_body(body.build()).build()
    )


def patch_request(message_id: str, content: dict) -> PatchMessageRequest:
    body = PatchMessageRequestBody.builder().content(json.dumps(content)).build()
    return PatchMessageRequest.builder().message_id(message_id).request_body(body).build()


def test_it_sends_and_patches_a_card_with_a_tenant_token_fetched_by_the_sdk(sandbox):
    # A fresh app id: lark-oapi caches tenant tokens per app id for the whole process.
    app_id = f"cli_{uuid.uuid4().hex[:12]}"
    sandbox.add_app(app_id, "fresh-secret")
    client = sdk_client(sandbox, app_id, "fresh-secret")

    created = client.im.v1.message.create(create_request(sandbox.alice["open_id"], card("Hello")))

    assert created.success(), (created.code, created.msg)
    message_id = created.data.message_id
    assert message_id.startswith("om_")
    assert created.data.chat_id.startswith("oc_")
    token_calls = sandbox.calls("tenant_token")
    assert [(c["params"]["app_id"], c["status"], c["code"]) for c in token_calls] == [
        (app_id, 200, 0)
    ]
    assert token_calls[0]["params"]["app_secret"] != "fresh-secret"

    patched = client.im.v1.message.patch(patch_request(message_id, card("Authorized")))

    assert patched.success(), (patched.code, patched.msg)
    message = sandbox.message(message_id)
    assert message["open_id"] == sandbox.alice["open_id"]
    assert message["content"]["header"]["title"]["content"] == "Authorized"
    assert [h["source"] for h in message["history"]] == ["create", "patch"]


def test_it_refuses_to_patch_a_card_that_is_not_shared(sandbox):
    client = sdk_client(sandbox)
    created = client.im.v1.message.create(
        create_request(sandbox.alice["open_id"], card("Hello", shared=False))
    )
    assert created.success()

    patched = client.im.v1.message.patch(patch_request(created.data.message_id, card("New")))

    assert patched.code == 230099
    assert "update_multi" in patched.msg
    assert sandbox.message(created.data.message_id)["content"]["header"]["title"]["content"] == (
        "Hello"
    )


def test_it_sends_one_message_for_a_repeated_uuid(sandbox):
    client = sdk_client(sandbox)
    request_uuid = uuid.uuid4().hex

    first = client.im.v1.message.create(
        create_request(sandbox.bob["open_id"], card("A"), request_uuid)
    )
    second = client.im.v1.message.create(
        create_request(sandbox.bob["open_id"], card("A"), request_uuid)
    )

    assert first.success()
    assert second.success()
    assert first.data.message_id == second.data.message_id
    assert len(sandbox.messages(open_id=sandbox.bob["open_id"])) == 1


def test_it_rejects_a_message_to_an_unknown_user(sandbox):
    created = sdk_client(sandbox).im.v1.message.create(create_request("ou_nobody", card("A")))

    assert created.code == 230013


def test_it_serves_user_info_for_a_token_from_the_consent_and_v2_flow(sandbox):
    tokens = authorize_and_exchange(
        sandbox, sandbox.alice["open_id"], scope="offline_access contact:user.email:readonly"
    )
    assert tokens["access_token"].startswith("eyJ")
    option = lark.RequestOption.builder().user_access_token(tokens["access_token"]).build()

    response = sdk_client(sandbox).authen.v1.user_info.get(
        GetUserInfoRequest.builder().build(), option
    )

    assert response.success(), (response.code, response.msg)
    assert response.data.name == "Alice Zhang"
    assert response.data.open_id == sandbox.alice["open_id"]
    assert response.data.union_id == sandbox.alice["union_id"]
    assert response.data.email == "alice@example.com"
    # No contact:user.phone:readonly / employee_id scope: those fields stay out.
    assert response.data.mobile is None
    assert response.data.user_id is None


def test_it_answers_user_info_with_an_invalid_token_as_feishu_does(sandbox):
    option = lark.RequestOption.builder().user_access_token("eyJnot-a-token").build()

    response = sdk_client(sandbox).authen.v1.user_info.get(
        GetUserInfoRequest.builder().build(), option
    )

    assert response.code == 99991668
    assert response.raw.status_code == 401


def test_it_gets_a_contact_user_by_each_id_type(sandbox):
    client = sdk_client(sandbox)
    for id_type in ("open_id", "union_id", "user_id"):
        request = (
            GetUserRequest.builder().user_id(sandbox.bob[id_type]).user_id_type(id_type).build()
        )

        response = client.contact.v3.user.get(request)

        assert response.success(), (id_type, response.code, response.msg)
        user = response.data.user
        assert (user.open_id, user.union_id, user.user_id) == (
            sandbox.bob["open_id"],
            sandbox.bob["union_id"],
            "bob",
        )
        assert (user.name, user.en_name, user.email) == ("Bob Li", "Bob", "bob@example.com")
        assert user.status.is_activated is True
        assert user.status.is_resigned is False
        assert user.avatar.avatar_72.startswith(sandbox.url)


def test_it_answers_an_unknown_contact_with_an_error(sandbox):
    request = GetUserRequest.builder().user_id("ou_nobody").user_id_type("open_id").build()

    response = sdk_client(sandbox).contact.v3.user.get(request)

    assert response.code == 41050
    [call] = sandbox.calls("contact_user")
    assert response.get_log_id() == call["log_id"]
