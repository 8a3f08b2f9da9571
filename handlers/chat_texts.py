"""Every Chinese string the official-account chat shows (routing, dialogue, questions, binding).

Short sentences, plain words, and always the next thing the villager can do.
"""

from __future__ import annotations

NAV = "（回复“取消”退出，“返回”上一步）"

WELCOME = (
    "欢迎关注！遇到生病住院、受灾、没活干等困难，点下方菜单“一键申报”，村干部会尽快联系您。\n"
    "有政策问题可以直接发文字问我，比如“小额信贷最多贷多少”。"
)
WELCOME_BACK = "{name}，欢迎回来！点“一键申报”即可直接申报，回复“进度”查看办理情况。"
HELP = (
    "您可以这样用：\n"
    "· 点菜单“一键申报”（或回复“申报”）报告家里的困难\n"
    "· 直接发文字问政策，如“小额信贷最多贷多少”\n"
    "· 回复“进度”查看申报办理情况\n"
    "· 点“联系村干部”找本村干部"
)
GREETING = "您好！" + HELP
UNSUPPORTED = "暂时只能看懂文字、语音、照片和位置。" + HELP
SYSTEM_BUSY = "系统繁忙，这条消息没有处理成功，请稍后再发一次。"
NOTHING_TO_CANCEL = "当前没有正在进行的操作。" + HELP

# --- one-code-per-household binding (一户一码) -------------------------------------------------

BOUND = "已绑定：{village}{head}户。以后点“一键申报”就能直接申报，不用再填信息。"
ALREADY_BOUND = "您已绑定{village}{head}户，点“一键申报”即可直接申报。"
BOUND_OTHER = "您的微信已绑定{village}{head}户。如需改绑到其他户，请联系村干部。"
AUDIT_ACTOR = "农户（公众号）"
AUDIT_BIND = "微信用户 {user} 扫描{head}户的户码，绑定到该户"
BAD_CODE = "这个二维码无效或已作废，请联系村干部重新领取本户的二维码。"

# --- the report dialogue --------------------------------------------------------------------

ASK_NAME = "好的，我们帮您申报。先请告诉我您的姓名。" + "（回复“取消”退出）"
ASK_VILLAGE = "请告诉我您是哪个村的（例如：龙湾村）。" + NAV
ASK_VILLAGE_AGAIN = "没有找到“{text}”，请再发一次村名（例如：龙湾村）。" + NAV
PICK_VILLAGE = "找到几个村，请回复数字选择：\n{choices}\n" + NAV
ASK_PHONE = "请留一个能联系到您的手机号（没有可回复“跳过”）。" + NAV
BAD_PHONE = "手机号好像不对，请发11位手机号（没有可回复“跳过”）。" + NAV
BAD_NAME = "请发您的姓名（2到10个字）。" + NAV
ASK_CONSENT = (
    "最后一步（承诺授权）：为了核实情况，您同意村、镇、县工作人员依法查询核对您家庭的收入、财产等信息吗？\n"
    "回复“同意”提交申报。" + NAV
)
NO_CONSENT = "没有您的授权，工作人员无法核实情况，申报没有提交。需要时可随时再点“一键申报”。"
CONSENT_AGAIN = "请回复“同意”提交申报，或回复“取消”退出。"
CANCELLED = "已取消，没有提交申报。需要时可随时再点“一键申报”。"
DETAILS_CLOSED = "好的。申报 {ref} 已保留，村干部会联系您；如是误报，请告诉村干部撤回。"
RECENT_CASE = "您刚刚已提交申报 {ref}，请接着说说情况，或回复“好了”结束。"

RISK_SAVED = "已记下困难类型：{labels}。"
RISK_UNKNOWN = "请回复1到11之间的数字（可多选，如“1 4”），或直接用文字说明情况。"
DESCRIBE_SAVED = "已补充到申报 {ref}。还可以继续说，或发语音、照片；说完回复“好了”。"
DESCRIBE_URGENT = "已补充到申报 {ref}。情况紧急，已转绿色通道，工作人员会尽快联系您。"
DESCRIBE_DONE = "好的，申报 {ref} 已提交完整，村干部会在时限内联系您。回复“进度”可查看办理情况。"
REPORT_FIRST = "请先点“一键申报”，再发照片或语音，我们会附在您的申报里。"

IMAGE_SAVED = "照片已收到，已附在申报 {ref} 中。"
IMAGE_KEPT = "照片已收到，提交申报后会附在里面。"
VOICE_SAVED = "语音已收到并附在申报 {ref} 中。方便的话请再用几个字写一下情况，或回复“回电”请村干部给您打电话。"
VOICE_NO_TEXT = "暂时听不清语音，请用几个字写一下，或回复“回电”请村干部给您打电话。"
LOCATION_SAVED = "位置已收到，已附在申报 {ref} 中。"
LOCATION_NO_CASE = "位置已收到。如需申报困难，请点“一键申报”。"

CALLBACK_OK = "已请村干部给您回电话（申报 {ref}），请保持电话畅通。"
CALLBACK_NO_CASE = "请先点“一键申报”提交申报，村干部会按您留的电话联系您。"
CONTACT = "您所在的村是{village}。{staff}如需回电，请回复“回电”。"
CONTACT_STAFF = "本村工作人员：{names}。"
CONTACT_UNKNOWN = "还不知道您是哪个村的。请扫本户二维码绑定，或点“一键申报”按提示填写村名。"

# --- policy questions -------------------------------------------------------------------------

ASK_PROMPT = "请直接发送您想了解的政策问题，例如：“小额信贷最多贷多少？”“看病能报销多少？”"
KB_UNAVAILABLE = "政策资料库暂时不可用，请稍后再问。急事请点“联系村干部”。"
NOT_ANSWERED = "\n如果家里遇到了困难，可以点“一键申报”，或点“联系村干部”。"
NO_LAST_QUESTION = "请先发一个政策问题，再回复“更多”查看更多条文。"
NO_MORE = "关于“{question}”没有更多相关条文了。可以换个说法再问。"

# --- the menu (服务号自定义菜单) and texts the outbox worker falls back to ----------------------

MENU_REPORT = "一键申报"
MENU_ASK = "政策问答"
MENU_MINE = "我的"
MENU_PROGRESS = "我的申报"
MENU_CONTACT = "联系村干部"

URGENT_FALLBACK = "【紧急申报】{village}有一条紧急申报（编号 {ref}）：{reasons}。请尽快登录工作台处理。"
OUTCOME_FALLBACK = "您的申报 {ref} 有了结果：{status}。回复“进度”可查看详情。"
