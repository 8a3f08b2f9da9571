"""Every Chinese string of the triage, queue and staff use cases (the console's words)."""

from __future__ import annotations

ROLE_LABELS = {"village": "村级", "township": "乡镇", "county": "县级", "admin": "管理员"}

# --- login ---------------------------------------------------------------------------------------
LOGIN_EMPTY = "请输入用户名和密码"
LOGIN_FAILED = "用户名或密码不正确"
LOGIN_LOCKED = "登录失败次数过多，账号已临时锁定，请 {minutes} 分钟后再试"
LOGIN_THROTTLED = "登录尝试太频繁，请稍后再试"
ADMIN_ONLY = "只有管理员可以查看审计日志"
BAD_PAGE = "页码不正确"

# --- case look-up and forms ------------------------------------------------------------------
CASE_NOT_FOUND = "没有找到这条申报，或它不在您负责的区域内"
FILE_NOT_FOUND = "没有找到这个文件，或它不在您负责的区域内"
STALE_FORM = "这条申报刚刚有了变化（可能是他人已办理，或表单被重复提交），本次操作没有执行，请刷新页面后再试"
CASE_CLOSED = "这条申报已办结（{outcome}），不能再办理"
CLOSED = "已办结"
OUT_OF_ORDER = "这条申报当前在“{current}”环节，不能办理“{wanted}”：必须按顺序逐步办理"
BAD_STEP = "办理环节不正确"
STEP_NEEDS_DECISION = "县级审定请选择审定结果（纳入监测、不予纳入或合并）"
STEP_NOT_ALLOWED = "“{step}”环节应由{roles}办理，您的角色（{role}）不能办理"
NOT_ALLOWED = "您的角色（{role}）不能{action}"
NOT_ALLOWED_REVEAL = "您的角色不能查看完整的身份证号和电话"
NOTICE_RUNNING = "村级公示期为 {days} 天，公示到 {end} 结束，期满后才能提交乡镇审核"
FIELD_REQUIRED = "请填写{label}"
FIELD_TOO_LONG = "{label}太长了（最多 {limit} 字）"
FIELD_BAD_CHARS = "{label}里有无法识别的控制字符"
BAD_AMOUNT = "金额请填写不超过 100 万的整数（元）"
BAD_KIND = "请选择帮扶措施类型"
BAD_OUTCOME = "请选择审定结果"
NEED_MONITORING_TYPE = "纳入监测请选择监测对象类型（脱贫不稳定户、边缘易致贫户或突发严重困难户）"
NEED_MERGE_TARGET = "请填写要合并到的申报编号"
MERGE_TARGET_MISSING = "没有找到要合并到的申报（请核对编号，且须在您负责的区域内）"
MERGE_SELF = "不能把申报合并到它自己"
MERGE_TARGET_CLOSED = "申报 {ref} 已办结，不能合并进去"
NOT_FLAGGED = "这条申报没有疑似重复标记"
FIRST_AID_NOT_URGENT = "只有绿色通道（紧急）申报可以先行救助"
ASSISTANCE_NOT_YET = "纳入监测后才能登记帮扶措施"
CLEAR_NOT_YET = "纳入监测并落实帮扶后才能办理风险消除"
CLEAR_MISSING = "风险消除的条件尚未全部确认：{items}"
CLEAR_NO_HOUSEHOLD = "这条申报还没有关联农户档案，无法确认劳动能力，不能办理风险消除"
CLEAR_NO_LABOUR = "该户无劳动能力，不能办理风险消除，应继续纳入监测、落实兜底保障"
CLEAR_NO_MEASURES = "还没有登记任何帮扶措施，不能办理风险消除"
ALREADY_URGENT = "这条申报已在绿色通道中"
BAD_HOUSEHOLD = "请选择本村的农户"
ALREADY_LINKED = "这条申报已关联农户档案"
BAD_ASSIGNEE = "请选择能看到这条申报的工作人员"
VILLAGE_ASSIGN_SELF = "村级工作人员只能把申报指派给自己"
BAD_ACTION = "不支持的操作"
UPLOAD_DISABLED = "暂不支持上传文件"
UPLOAD_TYPE = "证据文件只支持 JPG、PNG 图片或 PDF"
UPLOAD_TOO_BIG = "文件太大了（最大 {mb} MB）"
LABEL_NOTE = "办理说明"
LABEL_EVIDENCE = "证据说明"
LABEL_REASON = "不予纳入的原因"
LABEL_URGENT_REASON = "紧急原因"

# --- results ----------------------------------------------------------------------------------
DONE_STEP = "已完成“{step}”，进入“{next}”环节"
DONE_DECIDE = "已审定：{outcome}"
DONE_MERGE = "已合并到申报 {ref}"
DONE_DISMISS = "已排除重复"
DONE_FIRST_AID = "已登记先行救助"
DONE_ASSISTANCE = "已登记帮扶措施"
DONE_CLEAR = "已办理风险消除，申报办结"
DONE_URGENT = "已转入绿色通道，并通知乡镇工作人员"
DONE_LINK = "已关联农户档案"
DONE_ASSIGN = "已指派给 {name}"
DONE_NOTE = "已添加备注"

# --- the case page ------------------------------------------------------------------------------
ACTION_LABELS = {
    "advance": "完成本环节",
    "decide": "县级审定",
    "merge": "合并到另一条申报",
    "dismiss_duplicate": "不是重复",
    "first_aid": "先行救助",
    "assistance": "登记帮扶措施",
    "clear_risk": "风险消除",
    "mark_urgent": "转入绿色通道",
    "link_household": "关联农户档案",
    "assign": "指派",
    "note": "添加备注",
    "reveal": "显示完整信息",
    "export_unmasked": "导出完整信息",
}
ADVANCE_LABELS = {
    "warning": "核实预警，安排入户",
    "visit": "完成入户核查",
    "consent": "已签署承诺授权书",
    "data_check": "完成信息比对",
    "review": "完成民主评议，开始公示",
    "notice": "公示期满无异议，报乡镇审核",
    "township": "乡镇审核通过，报县级审定",
}
ADVANCE_DEFAULT = "完成“{step}”"
STEP_OWNER_HINT = "当前环节“{step}”由{roles}工作人员办理。"
EVENT_LABELS = {
    "created": "提交申报",
    "step_done": "完成环节",
    "decided": "县级审定",
    "merged": "合并到另一条申报",
    "merged_from": "有申报合并进来",
    "duplicate_dismissed": "排除疑似重复",
    "first_aid": "先行救助",
    "assistance": "帮扶措施",
    "risk_cleared": "风险消除",
    "urgent": "转入绿色通道",
    "household_linked": "关联农户档案",
    "assigned": "指派",
    "note": "备注",
    "attachment": "补充证据",
    "description": "补充情况说明",
    "described": "补充情况说明",
    "risk_types": "选择困难类型",
    "evidence": "补充证据（照片或语音）",
    "evidence_added": "补充证据（照片）",
    "callback_requested": "请求村干部回电",
}
EVENT_STEP_DONE = "完成“{step}”"
EVENT_DECIDED = "县级审定：{outcome}"
DETAIL_MONITORING = "监测类型：{type}"
DETAIL_REASON = "原因：{reason}"
DETAIL_KIND = "措施：{kind}"
DETAIL_AMOUNT = "金额：{amount} 元"
DETAIL_EVIDENCE = "证据：{evidence}"
DETAIL_OTHER = "相关申报：{ref}"
DETAIL_CONDITIONS = "已确认：{items}"
DETAIL_ASSIGNEE = "指派给：{name}"
DETAIL_FILE = "附件：{name}"
ACTOR_KINDS = {"villager": "农户", "staff": "工作人员", "system": "系统"}
ATTACHMENT_KINDS = {"image": "照片", "voice": "语音", "file": "文件"}
CLEAR_CONDITIONS = {
    "income_stable": "家庭收入稳定、持续高于监测标准",
    "basic_needs": "“两不愁三保障”（吃穿、义务教育、基本医疗、住房安全）有保障",
    "water_safe": "饮水安全有保障",
}
CLAUSES_UNAVAILABLE = "政策条款暂时无法显示：检索索引尚未建立或已过期，请管理员运行 huinong build-index。"
CLAUSES_NONE = "没有找到与这些困难类型直接相关的政策条款。"

# --- villager notifications (plain words) ----------------------------------------------------
PLAIN_MONITORING = {
    "unstable": "脱贫不稳定户",
    "marginal": "边缘易致贫户",
    "sudden": "突发严重困难户",
}
VILLAGER_OUTCOME = {
    "monitored": "您好！您的申报（编号 {ref}）经县里审定，已纳入防返贫监测（{type}）。"
                 "村干部会和您一起商量帮扶办法，有困难随时找村干部。",
    "rejected": "您好！您的申报（编号 {ref}）经审核，这次没有纳入监测。原因：{reason}。"
                "如果家里情况有变化，可以随时再申报，也可以找村干部问清楚。",
    "merged": "您好！您的申报（编号 {ref}）和您家的另一条申报（编号 {other}）说的是同一件事，"
              "已经合在一起办理，进度请看编号 {other}。",
    "risk_cleared": "您好！经核实，您家的情况（编号 {ref}）已经稳定，返贫风险已消除。"
                    "以后遇到困难，随时可以再申报。",
}
TEMPLATE_RESULT = {
    "monitored": "已纳入监测，正在帮扶",
    "rejected": "未纳入监测",
    "merged": "已与另一条申报合并办理",
    "risk_cleared": "风险已消除",
}
TEMPLATE_NO_REASON = "无"
STAFF_URGENT_TEXT = "紧急申报 {ref}（{village}）：{reasons}。请尽快处理。"

# --- queue and export -----------------------------------------------------------------------------
BAD_FILTER = "筛选条件不正确：{field}"
BAD_CURSOR = "分页参数不正确，请回到第一页"
SEARCH_TOO_LONG = "搜索内容太长了"
EXPORT_NOT_ALLOWED = "您的角色不能导出完整的身份证号和电话"
EXPORT_HEADERS = [
    "编号", "紧急", "环节", "结果", "困难类型", "乡镇村", "申报人", "电话", "身份证号", "户主", "渠道",
    "申报时间", "办理时限", "是否超期",
]
UNREADABLE = "（无法解密）"
YES = "是"
NO = "否"
STATUS_LABELS = {"open": "办理中", "closed": "已办结", "all": "全部"}
QR_UNAVAILABLE = "暂时无法获取二维码：{reason}"
QR_NOT_CONFIGURED = "未配置公众号（HUINONG_WECHAT_APPID / HUINONG_WECHAT_SECRET），无法生成户码"
NOT_A_VILLAGE = "请选择一个村"
QR_NO_TOKEN = "这户还没有户码编号"
QR_NO_RENDERER = "本机未安装二维码图片组件（segno），暂时无法打印户码"
VILLAGE_NOT_FOUND = "没有找到这个村，或它不在您负责的区域内"

# --- audit -------------------------------------------------------------------------------------------
AUDIT_LABELS = {
    "login": "登录",
    "login_failed": "登录失败",
    "login_locked": "锁定期间尝试登录",
    "logout": "退出",
    "reveal": "查看完整个人信息",
    "view_file": "查看证据文件",
    "step": "办理环节",
    "decide": "县级审定",
    "merge": "合并",
    "dismiss_duplicate": "排除重复",
    "first_aid": "先行救助",
    "assistance": "帮扶措施",
    "clear_risk": "风险消除",
    "mark_urgent": "转入绿色通道",
    "link_household": "关联农户",
    "assign": "指派",
    "note": "备注",
    "export": "导出",
    "print_codes": "打印户码",
    "csrf_refused": "拒绝伪造请求",
    "wechat_bind": "公众号扫码绑定农户",
    "mp_bind": "小程序绑定农户",
}

# Details written into the audit log (read by admins on the audit page).
AUDIT_UNKNOWN_ACCOUNT = "账号不存在或已停用"
AUDIT_LOCKED = "账号锁定期间尝试登录，已拒绝"
AUDIT_WRONG_PASSWORD = "密码错误"
AUDIT_NOW_LOCKED = "密码错误，账号已锁定"
AUDIT_REVEAL = "在申报页查看完整身份证号和电话"
AUDIT_STEP = "{done} → {next}"
AUDIT_DECIDE_MONITORED = "纳入监测（{type}）"
AUDIT_DECIDE_REJECTED = "不予纳入：{reason}"
AUDIT_MERGE = "合并到 {ref}"
AUDIT_DISMISS = "不是 {ref} 的重复"
AUDIT_MEASURE = "{kind}{amount}"
AUDIT_AMOUNT = "，{amount} 元"
AUDIT_CLEAR = "已确认：{items}"
AUDIT_LINK = "关联农户：{name}"
AUDIT_ASSIGN = "指派给 {name}"
AUDIT_FILE = "证据文件 {id}"
AUDIT_EXPORT = "{n} 条，{mode}，筛选：{filters}"
AUDIT_EXPORT_MASKED = "个人信息打码"
AUDIT_EXPORT_FULL = "含完整身份证号和电话"
AUDIT_NO_FILTER = "无"
AUDIT_CODES = "{n} 户"
FILTER_LABELS = {
    "status": "状态", "step": "环节", "risk": "困难类型", "channel": "渠道", "village": "村编号",
    "mine": "指派给我", "urgent": "只看紧急", "overdue": "只看超期", "q": "搜索",
}
