"""User-visible Chinese strings of the mini-program API, and the policy topics of its home screen."""

from __future__ import annotations

# --- errors --------------------------------------------------------------------------------

LOGIN_REQUIRED = "请先登录小程序"
TOKEN_INVALID = "登录信息无效，请重新进入小程序"
TOKEN_EXPIRED = "登录已过期，请重新进入小程序"
LOGIN_CODE_INVALID = "登录凭证无效或已使用，请重新进入小程序"
WECHAT_UNAVAILABLE = "微信服务暂时不可用，请稍后再试"
WECHAT_NOT_CONFIGURED = "小程序登录尚未配置，请联系管理员"
RATE_LIMITED = "操作太频繁了，请 {seconds} 秒后再试"
BIND_RATE_LIMITED = "绑定尝试次数太多，请 {minutes} 分钟后再试，或扫描村里发放的户码"

BIND_TOKEN_NOT_FOUND = "户码无效或已更换，请向村干部索取新的户码"
BIND_NO_MATCH = "没有找到匹配的农户信息，请核对户主姓名、身份证后6位和所在村，或扫描户码绑定"
BIND_AMBIGUOUS = "找到多户信息相同的农户，请扫描户码绑定或联系村干部"
BIND_NEEDS_ONE_WAY = "请提供户码，或者户主姓名、身份证后6位和所在村"
BIND_OTHER = "您的微信已经绑定了{village}{head}户。如需改绑，请联系村干部"
VILLAGE_NOT_FOUND = "没有找到这个村，请核对村名"

IDEMPOTENCY_KEY_MISSING = "缺少请求编号（Idempotency-Key），请更新小程序后重试"
IDEMPOTENCY_KEY_INVALID = "请求编号（Idempotency-Key）格式不正确"
IDEMPOTENCY_CONFLICT = "这个请求编号已用于另一条不同的申报，请重新提交"

UNBOUND_NEEDS_NAME = "还没有绑定农户，请填写申报人姓名"
UNBOUND_NEEDS_PHONE = "还没有绑定农户，请填写联系电话，方便村干部联系您"
UNBOUND_NEEDS_VILLAGE = "还没有绑定农户，请选择您所在的村"
UNBOUND_NEEDS_CONSENT = "请阅读并同意《承诺授权书》（同意核查家庭收入和财产）后再申报"

REPORT_NOT_FOUND = "没有找到这条申报"
PHOTO_TOO_LARGE = "照片太大了（最大 {mb} MB），请压缩后再上传"
PHOTO_NOT_IMAGE = "只能上传 JPG、PNG 或 WebP 格式的照片"
PHOTO_EMPTY = "照片是空的，请重新选择"
TOO_MANY_PHOTOS = "照片太多了，每条申报最多 {n} 张"

INDEX_UNAVAILABLE = "政策查询暂时不可用，请稍后再试，或直接联系村干部"
QUESTION_EMPTY = "请输入您想问的政策问题"

# --- validation of request bodies ----------------------------------------------------------

BODY_NOT_JSON = "请求内容不是有效的 JSON"
BODY_NOT_OBJECT = "请求内容应当是一个 JSON 对象"
FIELD_MISSING = "缺少必填项：{field}"
FIELD_UNKNOWN = "不认识的字段：{field}"
FIELD_TYPE = "{field} 的类型不正确，应为{expected}"
FIELD_TOO_SHORT = "{field} 不能少于 {n} 个字符"
FIELD_TOO_LONG = "{field} 不能超过 {n} 个字符"
FIELD_PATTERN = "{field} 的格式不正确"
FIELD_CHOICE = "{field} 的取值不正确"
FIELD_RANGE = "{field} 超出允许范围"
FIELD_TOO_MANY = "{field} 最多 {n} 项"

TYPE_NAMES = {
    "string": "文本",
    "integer": "整数",
    "boolean": "是/否",
    "array": "列表",
    "object": "对象",
}

# --- the policy topics of the home screen --------------------------------------------------

#: (code, title, one-line description, example questions). The examples are phrased the way
#: villagers ask, so they also show what the search understands.
POLICY_TOPICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "medical", "医疗救助", "看病报销、大病保险、医疗救助和先诊疗后付费",
        ("住院看病能报销多少？", "得了大病没钱治怎么办？", "慢性病门诊有没有补助？"),
    ),
    (
        "education", "教育资助", "上学费用减免、助学金和雨露计划",
        ("孩子上大学有什么补助？", "雨露计划怎么申请？", "上学的生活费能补贴吗？"),
    ),
    (
        "microcredit", "小额信贷", "脱贫人口小额信贷的额度、期限和贴息",
        ("贷款发展产业能贷多少？", "小额信贷要不要利息？", "贷款到期还不上能续贷吗？"),
    ),
    (
        "housing", "住房安全", "危房改造、住房安全保障和灾后重建",
        ("房子漏雨成了危房怎么办？", "危房改造补助多少钱？", "房子被水冲了有什么帮助？"),
    ),
    (
        "employment", "就业帮扶", "外出务工补贴、公益岗位和技能培训",
        ("外出打工有交通补贴吗？", "没活干能安排公益岗位吗？", "参加技能培训有补贴吗？"),
    ),
    (
        "relocation", "易地搬迁后续扶持", "搬迁安置点的就业、产业和社区服务",
        ("搬迁到安置点以后有什么扶持？", "安置点附近能找到工作吗？", "搬迁户的老房子怎么处理？"),
    ),
    (
        "assistance", "低保和临时救助", "最低生活保障、特困供养和临时救助",
        ("家里没收入能吃低保吗？", "遇到急事能申请临时救助吗？", "特困人员供养是什么条件？"),
    ),
    (
        "monitoring", "防返贫监测和自主申报", "哪些情况要申报、怎么申报、多久有回音",
        ("什么情况可以申报防返贫监测？", "申报以后多久有人来核查？", "纳入监测后有哪些帮扶？"),
    ),
)
