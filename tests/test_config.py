import pytest

from openai_s2s.control import config
from openai_s2s.realtime.endpoint import build_endpoint, key_refusal, tls_context

CONF = """<configuration name="openai_s2s.conf" description="x">
  <settings>
    <param name="connect-timeout" value="3"/>
    <param name="chunk-ms" value="40"/>
    <param name="instructions-dir" value="/etc/freeswitch/openai_s2s"/>
    <param name="tls-verify" value="maybe"/>
    <param name="no-such-thing" value="1"/>
  </settings>
</configuration>"""


def test_config_file_overrides_defaults_and_warns_on_bad_values():
    settings = config.Settings.from_xml(CONF)
    assert settings.values["connect_timeout"] == 3.0
    assert settings.values["chunk_ms"] == 40
    assert settings.values["instructions_dir"] == "/etc/freeswitch/openai_s2s"
    assert settings.values["tls_verify"] is True            # bad value: default kept
    assert any("tls_verify" in w for w in settings.warnings)
    assert any("no_such_thing" in w for w in settings.warnings)


def test_channel_variables_override_the_file_except_file_only_options():
    settings = config.Settings.from_xml(CONF)
    variables = {"openai_s2s_chunk_ms": "100", "openai_s2s_instructions_dir": "/",
                 "openai_s2s_headers": '{"X-Tenant": "acme"}', "openai_s2s_protocol": "BETA"}
    options = settings.for_call(variables.get)
    assert options["chunk_ms"] == 100
    assert options["instructions_dir"] == "/etc/freeswitch/openai_s2s"
    assert options["headers"] == {"X-Tenant": "acme"}
    assert options["protocol"] == "beta"


@pytest.mark.parametrize("name,value", [
    ("openai_s2s_chunk_ms", "5"), ("openai_s2s_chunk_ms", "abc"),
    ("openai_s2s_headers", "[1]"), ("openai_s2s_headers", '{"A\\r\\nB": "x"}'),
    ("openai_s2s_protocol", "gamma"), ("openai_s2s_hold_response_create", "sometimes"),
])
def test_bad_channel_variable_is_a_clear_error(name, value):
    with pytest.raises(config.ConfigError, match=name):
        config.Settings().for_call({name: value}.get)


def test_unreadable_config_file_falls_back_to_defaults():
    settings = config.Settings.from_xml("<configuration><settings>")
    assert settings.values["chunk_ms"] == 40 and settings.warnings


def test_key_from_environment_prefers_the_module_variable():
    assert config.key_from_environment({"OPENAI_API_KEY": "a", "OPENAI_S2S_API_KEY": "b"}) == "b"
    assert config.key_from_environment({}) is None


@pytest.mark.parametrize("host,path,url", [
    ("api.openai.com", "v1/realtime?model=gpt-realtime", "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
    ("api.openai.com", "/v1/realtime?model=gpt-realtime", "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
    ("myres.openai.azure.com:8443", "openai/v1/realtime?model=dep", "wss://myres.openai.azure.com:8443/openai/v1/realtime?model=dep"),
    ("ws://127.0.0.1:9000", "v1/realtime", "ws://127.0.0.1:9000/v1/realtime"),
    ("wss://gw.example/", "v1/realtime?a=1&b=2", "wss://gw.example/v1/realtime?a=1&b=2"),
])
def test_endpoint_urls(host, path, url):
    endpoint = build_endpoint(host, path, "bearer", "sk-secret")
    assert endpoint.url == url == endpoint.display_url
    assert endpoint.headers == ("Authorization: Bearer sk-secret",)


def test_query_auth_puts_the_key_in_the_url_but_not_the_display():
    endpoint = build_endpoint("res.openai.azure.com", "openai/realtime?api-version=2024-10-01-preview&deployment=d",
                              "query", "k/ey+1", beta=True)
    assert endpoint.url.endswith("&deployment=d&api-key=k%2Fey%2B1")
    assert "k/ey" not in endpoint.display_url and endpoint.display_url.endswith("api-key=***")
    assert endpoint.headers == ("OpenAI-Beta: realtime=v1",)
    assert "k/ey" not in repr(endpoint)


def test_api_key_header_and_extra_headers():
    endpoint = build_endpoint("h", "p", "api-key", "abcd", extra_headers={"X-A": "1"})
    assert endpoint.headers == ("api-key: abcd", "X-A: 1")


@pytest.mark.parametrize("host,auth", [("bad host", "bearer"), ("http://x", "bearer"), ("h", "basic"),
                                       ("", "bearer"), ("user@h", "bearer")])
def test_bad_endpoint_arguments(host, auth):
    with pytest.raises(ValueError):
        build_endpoint(host, "v1/realtime", auth, "k")


def test_tls_verification_is_on_by_default_and_can_be_relaxed():
    import ssl
    ctx = tls_context({})
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert not tls_context({"tls_verify_hostname": False}).check_hostname
    assert tls_context({"tls_verify": False}).verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("name,value", [
    ("openai_s2s_tls_verify", "false"), ("openai_s2s_tls_verify_hostname", "false"),
    ("openai_s2s_tls_ca_file", "/tmp/evil.pem"), ("openai_s2s_tls_cert_file", "/etc/shadow"),
    ("openai_s2s_tls_key_file", "/etc/shadow"), ("openai_s2s_key_hosts", "evil.example"),
    ("openai_s2s_key_over_ws", "true"), ("openai_s2s_instructions_dir", "/"),
])
def test_security_options_are_the_config_files_alone(name, value):
    """A dialplan or ESL client must not turn verification off, choose what files TLS reads, or
    widen where a key goes: these come from openai_s2s.conf.xml only."""
    option = name[len("openai_s2s_"):]
    assert config.Settings().for_call({name: value}.get)[option] == config.Settings().values[option]
    xml = f'<configuration name="openai_s2s.conf"><settings><param name="{option.replace("_", "-")}" value="{value}"/></settings></configuration>'
    assert config.Settings.from_xml(xml).values[option] != config.Settings().values[option]


@pytest.mark.parametrize("url,from_command,refused", [
    ("wss://api.openai.com/v1/realtime", False, False),
    ("wss://acme.openai.azure.com/openai/realtime", False, False),
    ("wss://openai.azure.com.evil.example/x", False, True),
    ("wss://evilopenai.azure.com/x", False, True),
    ("wss://evil.example/v1/realtime", False, True),
    ("wss://evil.example/v1/realtime", True, False),
    ("ws://127.0.0.1:8765/v1/realtime", False, False),
    ("ws://127.9.9.9:8765/v1/realtime", False, False),
    ("ws://[::1]:8765/v1/realtime", False, False),
    ("ws://localhost:8765/v1/realtime", False, False),
    ("ws://api.openai.com/v1/realtime", False, True),
    ("ws://10.0.0.5:8765/v1/realtime", True, True),
])
def test_where_a_key_may_go(url, from_command, refused):
    hosts = config.Settings().values["key_hosts"]
    assert (key_refusal(url, hosts, False, from_command) is not None) == refused


def test_key_over_ws_and_key_hosts_widen_it_from_the_config_file():
    settings = config.Settings({"key_hosts": "gw.example, *.corp.example", "key_over_ws": "true"})
    hosts = settings.values["key_hosts"]
    assert key_refusal("ws://gw.example/v1/realtime", hosts, True, False) is None
    assert key_refusal("wss://a.corp.example/x", hosts, True, False) is None
    assert key_refusal("wss://api.openai.com/x", hosts, True, False) is not None
    assert config.Settings({"key_hosts": "bad host!"}).warnings


@pytest.mark.parametrize("host,path,key,headers", [
    ("api.openai.com\r\nX-Evil: 1", "v1/realtime", "sk-k", None),
    ("api.openai.com", "v1/realtime?model=x\r\nX-Evil: 1", "sk-k", None),
    ("api.openai.com", "v1/realtime x", "sk-k", None),
    ("api.openai.com", "v1/realtime\x00", "sk-k", None),
    ("api.openai.com", "v1/realtime", "sk-k\r\nX-Evil: 1", None),
    ("api.openai.com", "v1/realtime", "sk-k\x00", None),
    ("api.openai.com", "v1/realtime", "sk-k", {"X-A": "b\x00c"}),
    ("api.openai.com", "v1/realtime", "sk-k", {"X-A\nB": "c"}),
    ("ws://user:pw@127.0.0.1:9", "v1/realtime", "sk-k", None),
    ("ws://127.0.0.1:99999", "v1/realtime", "sk-k", None),
])
def test_nothing_unsafe_reaches_the_upgrade_request(host, path, key, headers):
    with pytest.raises(ValueError):
        build_endpoint(host, path, "bearer", key, extra_headers=headers)
